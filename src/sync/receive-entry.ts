/** The bundled receiver's entry point: see receive.ts. */
import { receiveMain } from './receive.ts';

await receiveMain();
