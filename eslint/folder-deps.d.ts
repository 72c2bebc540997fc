/** Types of folder-deps.js for the TypeScript that reads it (src/deps.test.ts). */
import type { ESLint, Rule } from 'eslint';
export declare const folderDeps: Rule.RuleModule;
declare const plugin: ESLint.Plugin;
export default plugin;
