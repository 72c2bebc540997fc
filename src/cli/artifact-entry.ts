/**
 * Entry point of the artifact's CLI bundle, /opt/vigil/lib/vigil.mjs (built by artifact.ts): the
 * same as bin/vigil.js in a checkout, without tsx. `node /opt/vigil/lib/vigil.mjs <command> ...`.
 */
import { main } from './main.ts';

process.exitCode = await main(process.argv);
