/** Types of deps.js for the TypeScript that reads it (src/deps.test.ts). */
export declare const ALLOWED: Record<string, string[]>;
export declare const PRODUCTION: string[];
