// Test helpers for the dashboard: its URL from a manager's log, and a reader of
// its Server-Sent Events stream over a real HTTP connection.

import http from 'node:http';
import { eventually, RunningManager } from './helpers';

/** The `dashboard http://...` line the manager logs once the page is served. */
export async function dashboardUrl(m: RunningManager): Promise<string> {
  await eventually(() => /dashboard (http:\/\/\S+)/.test(m.stderr()), 10000, 'the dashboard line in the log');
  return /dashboard (http:\/\/\S+)/.exec(m.stderr())![1];
}

export interface SseEvent {
  name: string;
  data: any;
}

/** A GET of `url` (a plain HTTP request) with its status, headers and body. */
export function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Collects the events of `<url>events` as they arrive. */
export class SseReader {
  readonly events: SseEvent[] = [];
  private readonly req: http.ClientRequest;
  status = 0;
  closed = false;

  constructor(base: string) {
    let buffer = '';
    this.req = http.get(`${base}events`, (res) => {
      this.status = res.statusCode ?? 0;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const name = /^event: (.*)$/m.exec(frame)?.[1] ?? 'message';
          const data = /^data: (.*)$/m.exec(frame)?.[1];
          if (data !== undefined) this.events.push({ name, data: JSON.parse(data) });
        }
      });
      res.on('close', () => (this.closed = true));
    });
    this.req.on('error', () => (this.closed = true));
  }

  of(name: string): any[] {
    return this.events.filter((e) => e.name === name).map((e) => e.data);
  }

  /** Waits for an event `name` whose data passes `check`, and returns that data. */
  async waitFor(name: string, check: (data: any) => boolean = () => true, timeoutMs = 10000): Promise<any> {
    let found: any;
    await eventually(() => (found = this.of(name).find(check)) !== undefined, timeoutMs, `an SSE "${name}" event`);
    return found;
  }

  close(): void {
    this.req.destroy();
  }
}
