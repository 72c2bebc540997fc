/** `vigil dashboard user set|remove|list`: the dashboard's users in the secrets file (src/init/dashboard-users.ts, loaded on use). */
import type { Command } from 'commander';
import { readStdin } from './init.ts';

const say = (line: string): void => void process.stdout.write(`${line}\n`);

export function registerDashboard(program: Command): void {
  const user = program
    .command('dashboard')
    .description("the web dashboard's users (docs/dashboard.md)")
    .command('user')
    .description('add, change or remove a dashboard user in the secrets file; `vigil apply` then gives the change to the observers');
  user
    .command('set <name>')
    .description('add a user, or change its role and password; a generated password is written to dashboard-NAME.password (mode 600) beside the cluster file')
    .requiredOption('--role <role>', 'viewer (sees), operator (also acts) or admin')
    .option('-c, --config <file>', 'cluster file (the secrets file is beside it)', 'vigil.yaml')
    .option('--password-stdin', 'read the password from stdin (at least 12 characters) instead of generating one')
    .action(async (name: string, o: { role: string; config: string; passwordStdin?: boolean }) => {
      const { changeDashboardUser } = await import('../init/dashboard-users.ts');
      const password = o.passwordStdin ? (await readStdin('--password-stdin', 'leave the flag out to have one generated')).replace(/\r?\n$/, '') : null;
      const r = await changeDashboardUser(o.config, { kind: 'set', name, role: o.role, password });
      say(`dashboard user ${name} (${o.role}) set in ${r.secretsFile}`);
      if (r.passwordFile) say(`its password is in ${r.passwordFile} (mode 600): hand it over, then delete the file`);
      say('run `vigil apply` to give the change to the observers');
    });
  user
    .command('remove <name>')
    .description('remove a user; its open sessions end when the observers restart at the next `vigil apply`')
    .option('-c, --config <file>', 'cluster file (the secrets file is beside it)', 'vigil.yaml')
    .action(async (name: string, o: { config: string }) => {
      const { changeDashboardUser } = await import('../init/dashboard-users.ts');
      const r = await changeDashboardUser(o.config, { kind: 'remove', name });
      say(`dashboard user ${name} removed from ${r.secretsFile}`);
      say('run `vigil apply` to give the change to the observers');
    });
  user
    .command('list')
    .description('the users and their roles (never their password hashes)')
    .option('-c, --config <file>', 'cluster file (the secrets file is beside it)', 'vigil.yaml')
    .action(async (o: { config: string }) => {
      const { listDashboardUsers } = await import('../init/dashboard-users.ts');
      const users = await listDashboardUsers(o.config);
      if (users.length === 0) say('no dashboard user: the observers do not serve the dashboard (`vigil dashboard user set NAME --role admin`)');
      for (const u of users) say(`${u.name}\t${u.role}`);
    });
}
