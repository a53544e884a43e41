// A scripted stand-in for a manager, for client and CLI tests: real TCP and the
// real codec, with replies decided by the test.

import net from 'node:net';
import { decodeBody, encodeFrame, FrameDecoder } from '../src/codec';

export type Msg = Record<string, any>;
export type Handler = (msg: Msg, send: (m: unknown) => void, sock: net.Socket) => void;

export interface Fake {
  address: string;
  received: Msg[];
  close: () => Promise<void>;
}

/** Listens on a free loopback port; `handler` answers (or not) each decoded request. */
export async function fakeManager(handler: Handler): Promise<Fake> {
  const received: Msg[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    const decoder = new FrameDecoder(1024 * 1024);
    const send = (m: unknown) => sock.writable && sock.write(encodeFrame(m));
    sock.on('data', (chunk) => {
      for (const f of decoder.push(chunk)) {
        if (f.kind !== 'frame') return sock.destroy();
        const msg = decodeBody(f.body) as Msg;
        received.push(msg);
        handler(msg, send, sock);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    received,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
