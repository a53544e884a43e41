// Small formatting helpers for the CLI's human output.

export const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** Aligned columns, two spaces apart; columns whose cells are all numeric are right-aligned. */
export function table(header: string[], rows: (string | number)[][], indent = ''): string[] {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const numeric = header.map((_, c) => rows.length > 0 && rows.every((r) => /^[-+]?[\d.]+%?$|^-$/.test(String(r[c]))));
  const width = header.map((_, c) => Math.max(...cells.map((r) => r[c].length)));
  return cells.map((r) =>
    indent + r.map((cell, c) => (numeric[c] ? cell.padStart(width[c]) : cell.padEnd(width[c]))).join('  ').trimEnd());
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const pad = (x: number) => String(Math.floor(x)).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${pad((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d${pad((s % 86400) / 3600)}h`;
}

export function percent(p: number): string {
  return `${p.toFixed(1)}%`;
}

/** [5, 6, 7, 9] -> "5-7,9" (in the given order, so index order is kept). */
export function ranges(nums: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < nums.length; ) {
    let j = i;
    while (j + 1 < nums.length && nums[j + 1] === nums[j] + 1) j++;
    parts.push(j > i ? `${nums[i]}-${nums[j]}` : String(nums[i]));
    i = j + 1;
  }
  return parts.join(',');
}

/** JSON that survives bigint (ids or counters past 2^53 from the decoder): written as exact JSON numbers. */
export function toJson(value: unknown, indent?: number): string {
  const mark = `@@bigint${Math.random().toString(36).slice(2)}@@`;
  // `this[key]` is the value before Buffer#toJSON ran: binary goes out as base64.
  const replacer = function (this: Record<string, unknown>, key: string, v: unknown): unknown {
    const raw = this[key];
    return typeof v === 'bigint' ? `${mark}${v}` : raw instanceof Uint8Array ? Buffer.from(raw).toString('base64') : v;
  };
  const text = JSON.stringify(value, replacer, indent);
  return text.replace(new RegExp(`"${mark}(-?\\d+)"`, 'g'), '$1');
}
