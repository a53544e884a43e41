// The wire contract (docs/PROTOCOL.md, version 1) as TypeScript types.
// Server, client, CLI and tests all import from here; nothing else defines them.

export const PROTOCOL_VERSION = 1;

/** Request ids are unsigned integers; ids above 2^53 arrive (and are echoed) as bigint. */
export type RequestId = number | bigint;

export const ERROR_CODES = [
  'BAD_MESSAGE',
  'FRAME_TOO_LARGE',
  'UNKNOWN_COMMAND',
  'BAD_ARGUMENT',
  'UNAUTHENTICATED',
  'UNKNOWN_NODE',
  'SPAWN_FAILED',
  'TIMEOUT',
  'NODE_EXITED',
  'LIMIT',
  'INTERNAL',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export interface WireError {
  code: ErrorCode;
  message: string;
  details?: unknown;
}

export const NODE_STATES = ['spawning', 'running', 'killed'] as const;
export type NodeState = (typeof NODE_STATES)[number];

export const WAIT_MODES = ['spawned', 'connected'] as const;
export type WaitMode = (typeof WAIT_MODES)[number];

export const TOPICS = ['nodes', 'stats'] as const;
export type Topic = (typeof TOPICS)[number];

/** One node of the current generation, as `status` reports it. */
export interface NodeInfo {
  index: number;
  pid: number;
  state: NodeState;
  nodeId?: unknown;
  startedAt: number;
  connectedAt?: number;
  /** Present once killed: an integer, or null when the node died of a signal. */
  exitCode?: number | null;
  /** Present once killed: a signal name such as "SIGKILL", or null. */
  signal?: string | null;
  /** herd's addition, for a killed node that exited on its own: the last lines of its output (at most 5, each cut to 160 characters). */
  tail?: string[];
}

// ---- requests -------------------------------------------------------------

export interface HelloParams { token?: string; client?: string }
export interface GenerateParams { n: number; wait?: WaitMode; timeoutMs?: number; interface?: string }
export interface ConnectParams { pid: number; nodeId?: unknown }
export type KillParams = { pid: number } | { index: number };
export interface SubscribeParams { topics: Topic[] }
/** herd's addition: a page of a generation's timeline file (default: the current generation, from offset 0). */
export interface TimelineParams { generation?: number; offset?: number; maxBytes?: number }
/** herd's addition: a page of one node's output (default: the current generation, the last `maxBytes`). */
export interface LogsParams { index: number; generation?: number; offset?: number; maxBytes?: number }
/**
 * herd's addition: fault injection. Every `everyMs`, kill `kill` random live nodes of the
 * current generation (through the ordinary serialised kill), for `forMs` (default: until
 * stopped); `seed` makes the choice reproducible. `{stop: true}` ends it.
 */
/** Chaos rounds closer than this would flood the kill queue. */
export const CHAOS_MIN_EVERY_MS = 10;
export type ChaosParams = { kill: number; everyMs: number; forMs?: number; seed?: number } | { stop: true };

/** Parameters of each command, keyed by `cmd`. */
export interface CommandParams {
  hello: HelloParams;
  ping: Record<string, never>;
  generate: GenerateParams;
  connect: ConnectParams;
  status: Record<string, never>;
  reset: Record<string, never>;
  kill: KillParams;
  stats: Record<string, never>;
  subscribe: SubscribeParams;
  timeline: TimelineParams;
  logs: LogsParams;
  chaos: ChaosParams;
}

export type CommandName = keyof CommandParams;
export const COMMANDS: readonly CommandName[] = [
  'hello', 'ping', 'generate', 'connect', 'status', 'reset', 'kill', 'stats', 'subscribe', 'timeline', 'logs', 'chaos',
];

/** A validated request: what the server hands inward. */
export type Command = { [C in CommandName]: { cmd: C } & CommandParams[C] }[CommandName];

// ---- results ---------------------------------------------------------------

export interface ManagerIdentity { version: string; hostname: string; pid: number; address: string }

/**
 * One sample of the host. `cpus` and `load` are the contract's busy percentages
 * (steal counts as busy); the other CPU and load fields are herd's additions.
 */
export interface HostStats {
  cpus: number[];
  load: number;
  memUsed: number;
  memTotal: number;
  /** Percent of time the hypervisor gave to others, per core and in total (inside cpus and load). */
  cpusSteal: number[];
  steal: number;
  /** Percent of time idle with I/O outstanding, in total (idle, so outside load). */
  iowait: number;
  /** The kernel's 1, 5 and 15-minute load averages (runnable plus uninterruptible tasks). */
  loadavg: [number, number, number];
}
/** `cpu` is percent of one core (a multi-threaded node may exceed 100); `rss` is bytes. */
export interface NodeStats { pid: number; index: number; cpu: number; rss: number }
/** herd adds `generation`: the generation the listed nodes belong to. */
export interface StatsResult { generation: number; host: HostStats; nodes: NodeStats[] }

export interface NodeCounts { spawning: number; running: number; killed: number }

/** A node of the current generation that the OS refused to start (herd's addition to `status`). */
export interface NodeFailure { index: number; code: string; message: string }

export interface StatusResult {
  state: string;
  generation: number;
  target: number;
  counts: NodeCounts;
  nodes: NodeInfo[];
  failed: NodeFailure[];
}

/** How a stopped node ended: on its own, after SIGTERM, or by SIGKILL after the grace period. */
export type StopOutcome = 'exited' | 'terminated' | 'killed';

/** herd's additions to the `reset` result: what each node did, and what each containment layer caught. */
export interface ResetResult {
  killed: number;
  outcomes: Record<StopOutcome, number>;
  nodes: { index: number; pid: number; outcome: StopOutcome; exitCode: number | null; signal: string | null }[];
  /** Descendants that had left their node's process group, caught by the cgroup layer or the run-id sweep. */
  strays: { cgroup: number; sweep: number };
}

/** A page of a timeline file (herd's `timeline` command); see src/filechunk.ts. */
export interface TimelineResult {
  generation: number;
  /** It is the manager's current generation: its file may still grow. */
  current: boolean;
  offset: number;
  next: number;
  size: number;
  eof: boolean;
  /** Whole JSONL lines (TimelineLine), unless one line is longer than the page. */
  data: Uint8Array;
}

/** The largest `maxBytes` of `logs` (also its default): a reply stays well inside a 1 MiB frame. */
export const LOGS_MAX_BYTES = 256 * 1024;

/**
 * A page of one node's output, stdout and stderr together (herd's `logs` command).
 * Offsets count bytes of the node's whole output: output rotated into
 * node-I.log.1 keeps its offsets, and what is older than that is gone.
 */
export interface LogsResult {
  generation: number;
  index: number;
  pid: number;
  /** False once the node's process has been reaped: past `size`, nothing more will come. */
  alive: boolean;
  /** The oldest offset still on disk. */
  start: number;
  /** Where `data` starts: the requested offset; `start` if that was rotated away; the current file's start if it is past the end (truncated by someone else). */
  offset: number;
  /** `offset + data.length`: the offset to ask for next. */
  next: number;
  /** The output's end when read. */
  size: number;
  eof: boolean;
  /** Raw bytes (MessagePack bin): what the node wrote, not necessarily UTF-8 or whole lines. */
  data: Uint8Array;
}

/** Result fields of each command (the reply adds `id` and `ok: true`). */
export interface CommandResults {
  hello: { protocol: number; manager: ManagerIdentity };
  ping: { pong: true; time: number };
  generate: { generation: number; nodes: { index: number; pid: number }[] };
  connect: { index: number; generation: number };
  status: StatusResult;
  reset: ResetResult;
  kill: { pid: number; exitCode: number | null; signal: string | null; outcome: StopOutcome | null };
  stats: StatsResult;
  subscribe: { topics: Topic[] };
  timeline: TimelineResult;
  logs: LogsResult;
  /** `{stop}`: whether a run was stopped, and its kills; otherwise the run started (with the seed it uses). */
  chaos: { running: boolean; generation: number; seed?: number; kills: number };
}

export type OkReply<C extends CommandName = CommandName> = { id: RequestId; ok: true } & CommandResults[C];
export interface ErrorReply { id: RequestId | null; ok: false; error: WireError }
export type Reply = OkReply | ErrorReply;

// ---- events ----------------------------------------------------------------

export interface NodeEvent {
  event: 'node';
  generation: number;
  index: number;
  pid: number;
  state: NodeState;
  exitCode?: number | null;
  signal?: string | null;
}
export interface ReadyEvent { event: 'ready'; generation: number; n: number }
export type StatsEvent = { event: 'stats'; time: number } & StatsResult;
/** What a chaos run did (herd's addition, topic `nodes`): the same fields as its timeline lines. */
export type ChaosEvent = { event: 'chaos' } & ChaosAction;
export type ManagerEvent = NodeEvent | ReadyEvent | StatsEvent | ChaosEvent;

// ---- the timeline file (<log-dir>/timeline/gen-<G>.jsonl, one JSON object per line) ----

/** A node's phase in the manager: the protocol's states plus the steps between them. */
export type NodePhase = 'launching' | 'spawning' | 'running' | 'stopping' | 'killed' | 'failed';

/** Every line has `time` (ms since epoch) and `mono` (ms of CLOCK_MONOTONIC: for differences and ordering). */
interface Stamped { time: number; mono: number; generation: number }
export interface TimelineHeader extends Stamped {
  type: 'header';
  format: 1;
  /** The generate's n. */
  n: number;
  manager: ManagerIdentity;
  intervalMs: number;
}
export interface TimelineSample extends Stamped { type: 'sample'; host: HostStats; nodes: NodeStats[] }
export interface TimelineNodeChange extends Stamped {
  type: 'node';
  index: number;
  /** null for a node the OS refused to start. */
  pid: number | null;
  from: NodePhase;
  to: NodePhase;
  /** ms since this node's previous change (spawning to running: start to connect; stopping to killed: signal to reaped); null for the first. */
  latencyMs: number | null;
  exitCode?: number | null;
  signal?: string | null;
  outcome?: StopOutcome | null;
  failure?: { code: string; message: string };
}
export interface TimelineReady extends Stamped { type: 'ready'; n: number }
/** Why a chaos run ended. */
export type ChaosEnd = 'done' | 'stopped' | 'reset' | 'generate' | 'no-live-nodes';
/** A chaos run's start, each node it kills (`round` counts from 1), and its end. */
export type ChaosAction = { generation: number } & (
  | { action: 'start'; kill: number; everyMs: number; forMs: number | null; seed: number }
  | { action: 'kill'; round: number; index: number; pid: number }
  | { action: 'stop'; reason: ChaosEnd; kills: number }
);
export type TimelineChaos = Stamped & { type: 'chaos' } & ChaosAction;
export type TimelineLine = TimelineHeader | TimelineSample | TimelineNodeChange | TimelineReady | TimelineChaos;

/** Fixed defaults of the command line (PROTOCOL.md, "Command line"). */
export const DEFAULTS = {
  port: 7070,
  interfacePort: 7071,
  maxFrame: 1024 * 1024,
  killGraceMs: 1000,
  statsIntervalMs: 1000,
  waitTimeoutMs: 30000,
} as const;
