#!/usr/bin/env node
// The peer's argon2 bound: argon2id verifications per CPU-second with @node-rs/argon2 (the library the peer
// verifies passwords with), one after the other on the main thread.
//
// Usage:   node argon2_bound.mjs PHC_HASH PASSWORD [VERIFICATIONS]
// Output:  one JSON line: {"verifications", "cpu_seconds", "per_cpu_second"}.

import { verifySync } from '@node-rs/argon2';

const [hash, password, count = '20'] = process.argv.slice(2);
if (!hash || !password) {
  process.stderr.write('usage: node argon2_bound.mjs PHC_HASH PASSWORD [VERIFICATIONS]\n');
  process.exit(2);
}
const verifications = Number(count);
if (!verifySync(hash, password)) {
  process.stderr.write('argon2_bound: the password does not match the hash\n');
  process.exit(2);
}
const start = process.cpuUsage();
for (let i = 0; i < verifications; i += 1) verifySync(hash, password);
const used = process.cpuUsage(start);
const cpuSeconds = (used.user + used.system) / 1e6;
process.stdout.write(`${JSON.stringify({ verifications, cpu_seconds: cpuSeconds,
  per_cpu_second: verifications / cpuSeconds })}\n`);
