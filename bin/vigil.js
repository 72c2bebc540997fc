#!/usr/bin/env node
// Entry point of the `vigil` command. Runs the TypeScript sources through tsx so a
// checkout needs no build step; a packaged release bundles src/ with esbuild instead.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv);
