import anyio, sys, logging
logging.basicConfig(level=logging.INFO)
from fastwt.framework.cluster import RedisBus
async def main(step):
    async with RedisBus("unix:///tmp/cl/r.sock") as bus:
        if step >= 1:
            print(await bus.presence("lobby"))
        if step >= 2:
            await anyio.sleep(0.1)
    print("ok", step)
for step in range(3):
    try:
        anyio.run(main, step, backend=sys.argv[1])
    except BaseException as e:
        print("FAIL", step, repr(e)[:300])
