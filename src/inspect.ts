// `herd manager --inspect`: the manager's statechart, live in Stately's hosted
// inspector (needs the internet). XState's inspection events are converted by
// @statelyai/inspect's createInspector() and sent over a PartySocket to Stately
// Sky, the same session that its createSkyInspector() opens. That function is not
// used as is, because in a daemon (measured with 0.4.0):
//   - its socket queues every message while it is not open, without bound: with
//     no internet a manager's heap grew by ~68 KB per event with 1000 nodes in
//     its context, i.e. hundreds of MB per generation;
//   - it converts (serializes) every event even when nothing can be sent;
//   - it prints the session link with console.log on stdout, which carries only
//     the `listening` line, and reports every failed reconnect.
// Here the link is logged at startup, the queue is bounded, events are dropped
// while the socket is down, and an outage is one warning.

import { randomUUID } from 'node:crypto';
import { createInspector } from '@statelyai/inspect';
import PartySocket from 'partysocket';
import { stringify } from 'superjson';
import WebSocket from 'ws';
import type { InspectionEvent, Observer } from 'xstate';
import type { Logger } from './logger';

/** Where createSkyInspector() (0.4.0) connects, and the page that shows its sessions. */
const SKY_HOST = 'stately-sky-beta.mellson.partykit.dev';
const SKY_PAGE = 'https://stately.ai/registry/inspect';
/** Events passed on before the socket first opens (the actors' definitions come first), and kept queued. */
const MAX_QUEUED = 500;

export interface SkyInspector {
  /** The page that shows this manager's statechart once the socket is open. */
  url: string;
  /** For `createActor(machine, { inspect })`. */
  inspect: Observer<InspectionEvent>;
}

export function skyInspector(logger: Logger): SkyInspector {
  const session = randomUUID();
  const url = `${SKY_PAGE}/${session}`;
  const socket = new PartySocket({ host: SKY_HOST, room: `inspect-${session}`, WebSocket, maxEnqueuedMessages: MAX_QUEUED });
  let open = false;
  let down = false;
  let early = 0;
  socket.onopen = () => {
    open = true;
    down = false;
    logger.info(`inspect: connected to Stately Sky; the manager's statechart is live at ${url}`);
  };
  socket.onclose = () => (open = false);
  socket.onerror = (err) => {
    open = false;
    const why = (err as { message?: string }).message || 'connection failed';
    if (down) return logger.debug(`inspect: ${SKY_HOST} still unreachable (${why})`);
    down = true;
    logger.warn(`inspect: cannot reach Stately Sky at ${SKY_HOST} (${why}); the manager keeps serving without live inspection and retries in the background. Without internet, use --dashboard`);
  };
  const inspector = createInspector({ send: (event) => socket.send(stringify(event)) });
  return {
    url,
    inspect: {
      next: (event) => {
        if (open || early++ < MAX_QUEUED) inspector.inspect.next?.(event);
      },
    },
  };
}
