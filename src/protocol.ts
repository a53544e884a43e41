// The wire contract (../shared/PROTOCOL.md, version 1) as TypeScript types.
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
}

// ---- requests -------------------------------------------------------------

export interface HelloParams { token?: string; client?: string }
export interface GenerateParams { n: number; wait?: WaitMode; timeoutMs?: number; interface?: string }
export interface ConnectParams { pid: number; nodeId?: unknown }
export type KillParams = { pid: number } | { index: number };
export interface SubscribeParams { topics: Topic[] }

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
}

export type CommandName = keyof CommandParams;
export const COMMANDS: readonly CommandName[] = [
  'hello', 'ping', 'generate', 'connect', 'status', 'reset', 'kill', 'stats', 'subscribe',
];

/** A validated request: what the server hands inward. */
export type Command = { [C in CommandName]: { cmd: C } & CommandParams[C] }[CommandName];

// ---- results ---------------------------------------------------------------

export interface ManagerIdentity { version: string; hostname: string; pid: number; address: string }

export interface HostStats { cpus: number[]; load: number; memUsed: number; memTotal: number }
export interface NodeStats { pid: number; index: number; cpu: number; rss: number }
export interface StatsResult { host: HostStats; nodes: NodeStats[] }

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
export type ManagerEvent = NodeEvent | ReadyEvent | StatsEvent;

/** Fixed defaults of the command line (PROTOCOL.md, "Command line"). */
export const DEFAULTS = {
  port: 7070,
  interfacePort: 7071,
  maxFrame: 1024 * 1024,
  killGraceMs: 1000,
  statsIntervalMs: 1000,
  waitTimeoutMs: 30000,
} as const;
