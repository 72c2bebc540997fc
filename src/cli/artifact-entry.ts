/**
 * Entry point of the artifact's CLI bundle, /opt/vigil/lib/vigil.mjs (built by artifact.ts):
 * `node /opt/vigil/lib/vigil.mjs <command> ...`. The program bin/vigil.js runs in a checkout,
 * without tsx and without a checkout's extras (src/cli/checkout.ts): no `vigil lab`, no `vigil
 * refapp`, and `--lab` only says it needs a checkout, so no module of the lab or the reference
 * application is bundled.
 */
import { main } from './main.ts';

process.exitCode = await main(process.argv);
