// fastwt browser helpers: used by the demo page and by the browser interop tests.
window.fastwt = (() => {
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const hexToBytes = (hex) => Uint8Array.from(hex.match(/../g), (b) => parseInt(b, 16));
  const withTimeout = (promise, ms, what) =>
    Promise.race([
      promise,
      new Promise((_, reject) => setTimeout(() => reject(new Error(what + ": timed out")), ms)),
    ]);

  async function connect(url, hash) {
    const wt = new WebTransport(url, {
      serverCertificateHashes: [{ algorithm: "sha-256", value: hexToBytes(hash) }],
    });
    await withTimeout(wt.ready, 10000, "connect " + url);
    return wt;
  }

  async function readAll(readable) {
    const reader = readable.getReader();
    const chunks = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks.push(value);
    }
    const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let offset = 0;
    for (const c of chunks) { out.set(c, offset); offset += c.length; }
    return out;
  }

  async function bidiEcho(wt, text) {
    const stream = await wt.createBidirectionalStream();
    const writer = stream.writable.getWriter();
    await writer.write(enc.encode(text));
    await writer.close();
    return dec.decode(await withTimeout(readAll(stream.readable), 5000, "bidi echo"));
  }

  // A unidirectional stream to the server; the echo server answers with a
  // unidirectional stream of its own carrying the same bytes.
  async function uniEcho(wt, text) {
    const incoming = wt.incomingUnidirectionalStreams.getReader();
    const stream = await wt.createUnidirectionalStream();
    const writer = stream.getWriter();
    await writer.write(enc.encode(text));
    await writer.close();
    const { value } = await withTimeout(incoming.read(), 5000, "incoming uni stream");
    incoming.releaseLock();
    return dec.decode(await withTimeout(readAll(value), 5000, "uni echo"));
  }

  // Datagrams may be lost: send until one comes back.
  async function datagramEcho(wt, text, tries = 10) {
    const writer = wt.datagrams.writable.getWriter();
    const reader = wt.datagrams.readable.getReader();
    try {
      for (let i = 0; i < tries; i++) {
        await writer.write(enc.encode(text));
        try {
          const { value } = await withTimeout(reader.read(), 500, "datagram");
          return dec.decode(value);
        } catch (e) { /* lost: try again */ }
      }
      throw new Error("no datagram came back after " + tries + " tries");
    } finally {
      writer.releaseLock();
      reader.releaseLock();
    }
  }

  // Ask the dev server's /close path to close the session; resolves with what the
  // browser reports: {closeCode, reason}.
  async function serverClose(wt) {
    try {
      const stream = await wt.createUnidirectionalStream();
      const writer = stream.getWriter();
      await writer.write(enc.encode("close, please"));
      await writer.close();
    } catch (e) {
      // The server may have closed the session already.
    }
    const info = await withTimeout(wt.closed, 5000, "transport.closed");
    return { closeCode: info.closeCode, reason: info.reason };
  }

  return { hexToBytes, connect, readAll, bidiEcho, uniEcho, datagramEcho, serverClose };
})();
