// Failed-hello budget per peer address: a token bucket that refills with time.
// A peer that keeps guessing the token is slowed to one guess per `refillMs`;
// other peers keep their own budget. Memory stays bounded: a bucket that has
// refilled is forgotten, and past `maxPeers` the oldest are dropped.

export interface FailureLimitOptions {
  /** Failures a peer may have in a row before it must wait. */
  burst: number;
  /** One more failure is allowed per this many ms. */
  refillMs: number;
  maxPeers?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class FailureLimiter {
  // Insertion order is recency order: fail() moves a peer to the end.
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly opts: FailureLimitOptions,
    private readonly now: () => number = Date.now,
  ) {}

  /** Ms until `peer` may try again; 0 if it may try now. */
  retryAfter(peer: string): number {
    const tokens = this.refill(peer)?.tokens ?? this.opts.burst;
    return tokens >= 1 ? 0 : Math.ceil((1 - tokens) * this.opts.refillMs);
  }

  /** Records a failure of `peer`; true when this one used up its budget. */
  fail(peer: string): boolean {
    const bucket = this.refill(peer) ?? { tokens: this.opts.burst, at: this.now() };
    bucket.tokens = Math.max(0, bucket.tokens - 1);
    this.buckets.delete(peer);
    this.buckets.set(peer, bucket);
    const max = this.opts.maxPeers ?? 10_000;
    for (const oldest of this.buckets.keys()) {
      if (this.buckets.size <= max) break;
      this.buckets.delete(oldest);
    }
    return bucket.tokens < 1;
  }

  /** Peers currently remembered (for tests and diagnostics). */
  get size(): number {
    return this.buckets.size;
  }

  private refill(peer: string): Bucket | undefined {
    const bucket = this.buckets.get(peer);
    if (!bucket) return undefined;
    const t = this.now();
    bucket.tokens = Math.min(this.opts.burst, bucket.tokens + (t - bucket.at) / this.opts.refillMs);
    bucket.at = t;
    if (bucket.tokens >= this.opts.burst) {
      this.buckets.delete(peer);
      return undefined;
    }
    return bucket;
  }
}
