// Where the installed package is (src/ runs from the repository, dist/src/ from a
// build): found by its package.json, for the files shipped beside the code (the
// dashboard's assets) and for the version the CLI and the manager report.

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

function findRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
  }
  throw new Error(`no package.json above ${__dirname}; herd is not installed as a package`);
}

export const PACKAGE_ROOT = findRoot();

/** The package's version, from its package.json. */
export const VERSION: string = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')).version;
