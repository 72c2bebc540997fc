/**
 * The cluster file schema: one source for the config type, its validation, its defaults and
 * its reference documentation (docs/config-reference.md is generated from the `.describe()`
 * texts below by `npm run docs`).
 */
import { z } from 'zod';
import { alertSecretsShape, alertsSchema } from './alerts.ts';
import { UNIT_RE, pgName, safePath, strictText, syncDir } from './patterns.ts';

/** The dashboard's roles, least to most rights (docs/dashboard.md). */
export const DASHBOARD_ROLES = ['viewer', 'operator', 'admin'] as const;
export type DashboardRole = (typeof DASHBOARD_ROLES)[number];
/** `scrypt$N$r$p$salt$hash`, salt and hash in base64url (src/dashboard/users.ts). */
export const SCRYPT_HASH_RE = /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9_-]{16,}\$[A-Za-z0-9_-]{32,}$/;

export const ROLES = ['etcd', 'proxy', 'observer', 'app', 'db'] as const;
export type Role = (typeof ROLES)[number];

export const TOPOLOGIES = ['pair', 'distributed', 'custom'] as const;
export type Topology = (typeof TOPOLOGIES)[number];

/** Roles of the machines each preset names; `custom` names none. */
export const PRESET_ROLES: Record<Exclude<Topology, 'custom'>, Record<string, Role[]>> = {
  pair: {
    observer: ['etcd', 'proxy', 'observer'],
    app1: ['app', 'db'],
    app2: ['app', 'db'],
  },
  distributed: {
    observer: ['etcd', 'proxy', 'observer'],
    app1: ['app'],
    app2: ['app'],
    db1: ['db'],
    db2: ['db'],
  },
};

const NAME_RE = /^[a-z][a-z0-9-]{0,30}$/;
const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

const port = (what: string, dflt: number) => z.number().int().min(1).max(65535).default(dflt).describe(`${what} (default ${dflt}).`);

export const machineSchema = z
  .strictObject({
    address: z.string().regex(IPV4_RE, { message: 'must be an IPv4 address such as 10.0.0.11' }).describe('IPv4 address the other machines reach this one on.'),
    roles: z
      .array(z.enum(ROLES))
      .min(1)
      .optional()
      .describe(
        `Roles of the machine: ${ROLES.join(', ')}. May be left out for machines a preset names (pair: observer, app1, app2; distributed: observer, app1, app2, db1, db2).`,
      ),
    sshUser: strictText(
      /^[a-z_][a-z0-9_-]{0,31}$/,
      'must be a user name of lower case letters, digits, _ and - (it is passed to ssh and sudo)',
      'write e.g. `root` or `vigil`',
    )
      .default('root')
      .describe('SSH user Vigil logs in as (default root).'),
    sshPort: port('SSH port', 22),
  })
  .describe('One machine of the cluster.');

export const passwordFileSchema = z
  .strictObject({
    path: z
      .string()
      .startsWith('/', { message: 'must be an absolute path' })
      .refine((p) => !/[\0\n\r]/.test(p) && !p.split('/').includes('..'), {
        message: 'must not contain `..`, a newline or a NUL',
        params: { fix: 'write the plain absolute path of the file, e.g. /opt/ServiceOps/conf/db.properties' },
      })
      .describe('Absolute path of the application config file.'),
    format: z
      .enum(['properties', 'env', 'shell'])
      .default('properties')
      .describe('How the file stores the password: `properties` (key=value), `env` (KEY=value), `shell` (export KEY="value").'),
    key: strictText(
      /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/,
      'must be a key of letters, digits and _ . - (starting with a letter or _): it is written as `key=` into the file',
      'write e.g. `db.password` or `DB_PASSWORD`',
    ).describe('The key whose value is the database password.'),
  })
  .describe('An application config file that holds the database password.');

export const tlsEndpointSchema = z
  .strictObject({
    service: z.string().min(1).describe('The service that serves it: a `name` of `application.services` (doctor names its unit when it must be restarted).'),
    port: z.number().int().min(1).max(65535).describe('TCP port the endpoint listens on, on the active app machine.'),
    settingsFile: z
      .string()
      .startsWith('/', { message: 'must be an absolute path, e.g. /opt/ServiceOps/appsettings.json' })
      .describe(
        'Absolute path of the file the application reads its certificate and key paths from, on every app machine, e.g. /opt/ServiceOps/appsettings.json.',
      ),
    format: z
      .enum(['json', 'properties', 'env'])
      .default('json')
      .describe(
        'How that file stores them: `json` (default; comments and trailing commas allowed, as .NET reads appsettings.json), `properties` (key=value) or `env` (KEY=value).',
      ),
    certificatePathKey: z
      .string()
      .min(1)
      .default('CertificateFilePath')
      .describe(
        'The key whose value is the certificate file (PEM): in JSON a dotted path to a nested key, e.g. `Https.CertificateFilePath` (`:` separates too, as .NET writes `Kestrel:Certificates:Default:Path`); in a properties or env file the key itself. Default CertificateFilePath.',
      ),
    keyPathKey: z
      .string()
      .min(1)
      .default('KeyFilePath')
      .describe('The key whose value is the private key file (PEM, without a passphrase), written as `certificatePathKey` is. Default KeyFilePath.'),
  })
  .describe("An HTTPS endpoint of the application itself, with its own certificate: where the application's settings name the certificate and key files.");

export const backendTlsSchema = z
  .strictObject({
    port: port('Port nginx serves HTTPS on, on each app machine; HAProxy connects there with TLS', 443),
    ca: z
      .string()
      .min(1)
      .default('cluster')
      .describe(
        "What the app machines' certificates are checked against: `cluster` (default), the cluster CA, from which `vigil apply` issues each app machine a certificate naming the machine (its name here and its address); or your CA's certificate (PEM), a file on the admin's machine relative to the cluster file, which apply copies to the proxy, observer and app machines: then `certificate` and `key` name your certificates on the app machines.",
      ),
    verify: z
      .boolean()
      .default(true)
      .describe(
        "Whether HAProxy, the agents and the observer verify the app machines' certificates (chain to `ca`, the machine's name, validity); default true. `false` is HAProxy's `verify none`, the seed's line: anyone who can answer on the machine's address gets the users' traffic; `vigil validate` and `vigil doctor` warn about it.",
      ),
    certificate: safePath('nginx.conf', '/etc/ssl/servicedesk/app.pem')
      .optional()
      .describe(
        'With your own `ca`: the certificate nginx serves (PEM, then any intermediates), the same path on every app machine; it must name the machine (its name in this file) as a DNS name. You put it there; apply does not issue it.',
      ),
    key: safePath('nginx.conf', '/etc/ssl/servicedesk/app.key')
      .optional()
      .describe('With your own `ca`: the private key of `certificate` (PEM, no passphrase), the same path on every app machine, readable by root only.'),
  })
  .describe(
    "HTTPS from the proxy to the application machines (the seed's \"Configure Backend for HTTPS\"), verified: nginx on each app machine serves HTTPS on `port` and HAProxy, the agents' role check and the observer's deep check connect with TLS and check the certificate.",
  );

export const serviceSchema = z
  .strictObject({
    name: z.string().regex(NAME_RE, { message: 'must be lower case letters, digits and dashes' }).describe('Short name.'),
    unit: strictText(
      UNIT_RE,
      'must be a systemd unit name ending in .service or .target, of letters, digits and : _ . @ - (not starting with -): the agent passes it to systemctl',
      'write e.g. `servicedesk.service`',
    ).describe('systemd unit that runs it on a real machine, e.g. nginx.service.'),
    runsOn: z
      .enum(['active', 'every'])
      .default('active')
      .describe(
        'Where it runs: `active` (default) only on the active app machine, started on activation; `every` on every app machine, kept running on the standbys (warm standby: started and connected, never routed to unless active), told of activation through `application.activation`, which it then needs.',
      ),
    healthUrl: z
      .string()
      .regex(/^http:\/\/(127\.0\.0\.1|localhost|\[::1\]):\d{1,5}\/\S*$/, {
        message: 'must be an http:// URL on loopback with a port, e.g. http://127.0.0.1:8080/health',
      })
      .optional()
      .describe(
        "The service's own health check on each app machine (loopback, not through nginx), answering 2xx once it has started. The agent asks it every cycle where the service runs by its placement: a warm (`every`) service on the standbys, so `vigil status` and `vigil doctor` tell a warm standby that is still starting (a failover to it now would wait for it) from one that is ready; an `active` one (an analytics service) on the active machine, where doctor warns when it runs but does not pass it. It only informs: routing follows the application's health check (`healthPath`). Left out: running is all they show.",
      ),
  })
  .describe('A service of the application.');

export const activationSchema = z
  .strictObject({
    url: z
      .string()
      .regex(/^http:\/\/(127\.0\.0\.1|localhost|\[::1\]):\d{1,5}\/\S*$/, {
        message: 'must be an http:// URL on loopback with a port, e.g. http://127.0.0.1:8081/vigil/activation',
      })
      .optional()
      .describe(
        'The application\'s activation endpoint on each app machine (loopback): the agent POSTs `{"active": true, "epoch": N, "validForMs": M}` every cycle while its machine is active and `{"active": false}` when it stops being active; a 2xx answer confirms (docs/application-contract.md). One of url, command, file.',
      ),
    command: z
      .array(z.string().min(1, { message: 'must not be empty' }))
      .min(1, { message: 'must name a program: [/absolute/path, args...]' })
      .refine((a) => a[0]!.startsWith('/'), { message: 'its first element must be the absolute path of the program, e.g. /opt/app/bin/activate' })
      .optional()
      .describe(
        'A program the agent runs on each app machine (argv, no shell) at the same moments as the url, with the same JSON on its standard input and in VIGIL_ACTIVE (1 or 0), VIGIL_EPOCH and VIGIL_VALID_FOR_MS; exit status 0 confirms. One of url, command, file.',
      ),
    file: z
      .string()
      .startsWith('/', { message: 'must be an absolute path, e.g. /run/app/vigil-activation.json' })
      .regex(/^\/[A-Za-z0-9._/-]+$/, { message: 'must be an absolute path of letters, digits and . _ / -' })
      .optional()
      .describe(
        'A file the agent writes on each app machine (atomically) at the same moments as the url: `{"active": true, "epoch": N, "validUntilMs": T, "seq": K}` (T on the machine\'s wall clock) or `{"active": false, "seq": K}`; the application confirms a deactivation by writing `{"seq": K}` to the same path with `.ack` appended. One of url, command, file.',
      ),
    timeoutMs: z
      .number()
      .int()
      .min(100)
      .max(30_000)
      .default(3000)
      .describe('Deadline of each call; a deactivation not confirmed within it stops every service of the machine (a fence). Default 3000.'),
  })
  .superRefine((a, ctx) => {
    const forms = (['url', 'command', 'file'] as const).filter((k) => a[k] !== undefined);
    if (forms.length !== 1)
      ctx.addIssue({
        code: 'custom',
        message:
          forms.length === 0
            ? 'needs one of url, command or file (docs/application-contract.md)'
            : `has ${forms.join(' and ')}: give only one of url, command or file`,
      });
  })
  .describe('How the agent tells the application that its machine became active or stopped being active: one of url, command, file, with a deadline.');

export const clusterFileSchema = z
  .strictObject({
    cluster: z
      .strictObject({
        name: z
          .string()
          .regex(NAME_RE, { message: 'must be lower case letters, digits and dashes, starting with a letter' })
          .default('vigil')
          .describe('Cluster name: the Patroni scope and the etcd key prefix /vigil/<name>/ (default vigil).'),
      })
      .prefault({})
      .describe('Cluster identity.'),
    topology: z.enum(TOPOLOGIES).default('custom').describe('Preset: pair, distributed or custom (default custom).'),
    secretsFile: z.string().default('vigil.secrets.yaml').describe('Secrets file, relative to this file; must be readable by its owner only (mode 600).'),
    machines: z
      .record(z.string().regex(NAME_RE, { message: 'machine names are lower case letters, digits and dashes, starting with a letter' }), machineSchema)
      .describe('The machines, by name.'),
    database: z
      .strictObject({
        replication: z
          .enum(['synchronous', 'asynchronous'])
          .default('synchronous')
          .describe('synchronous (default: Patroni synchronous_mode, no acknowledged write lost) or asynchronous.'),
        maximumLagOnFailoverBytes: z
          .number()
          .int()
          .min(0)
          .default(1048576)
          .describe('Asynchronous mode: a replica further behind than this is not promoted (default 1048576).'),
        postgresVersion: z.number().int().min(13).max(18).default(15).describe('PostgreSQL major version (default 15).'),
        watchdog: z
          .enum(['required', 'off'])
          .default('off')
          .describe(
            "Patroni's watchdog. `required` on machines with a watchdog device (/dev/watchdog: softdog, or the VM's or board's own): a primary that hangs is reset before its lease runs out, and Patroni refuses to lead where the device cannot be opened. `off` (default) runs without one; `vigil preflight` and `vigil doctor` say which machines have a device. Never Patroni's `automatic`, which quietly runs without one.",
          ),
        failoverBy: z
          .enum(['observer', 'patroni'])
          .default('observer')
          .describe(
            "Who ends a dead primary's leadership. `observer` (default): once the primary has not served for `timers.dbFailAfterMs`, every proxy has it down and a synchronous standby is healthy, the acting observer revokes the etcd lease of Patroni's leader key, and the standby takes over at once (Patroni 3.0.3 or later; on older Patroni the ttl decides). `patroni`: Patroni's leader key expires after its ttl (20 s or more on Patroni 3.2 and later).",
          ),
        port: port('PostgreSQL port', 5432),
        patroniPort: port('Patroni REST API port', 8008),
        superuser: pgName('role', 'postgres').default('postgres').describe('Database superuser (default postgres). Lower case letters, digits and _.'),
        replicationUser: pgName('role', 'replicator')
          .default('replicator')
          .describe('Replication user (default replicator). Lower case letters, digits and _.'),
        appDatabase: pgName('database', 'servicedesk')
          .default('servicedesk')
          .describe('Database of the application (default servicedesk). Lower case letters, digits and _.'),
        appUser: pgName('role', 'servicedesk')
          .default('servicedesk')
          .describe('Database user of the application (default servicedesk). Lower case letters, digits and _.'),
      })
      .prefault({})
      .describe('The PostgreSQL tier.'),
    timers: z
      .strictObject({
        ttlSeconds: z
          .number()
          .int()
          .min(4)
          .default(7)
          .describe("Patroni leader lease (ttl): a dead primary's lock expires after at most this long; default 7 (Patroni's own default is 30)."),
        loopWaitSeconds: z.number().int().min(1).default(1).describe('Patroni loop_wait: seconds between HA cycles; default 1 (Patroni: 10).'),
        retryTimeoutSeconds: z
          .number()
          .int()
          .min(1)
          .default(3)
          .describe('Patroni retry_timeout: how long etcd and PostgreSQL operations are retried before the primary demotes itself; default 3 (Patroni: 10).'),
        proxyCheckIntervalMs: z.number().int().min(100).default(1000).describe('HAProxy health-check interval; default 1000.'),
        proxyQuickCheckIntervalMs: z
          .number()
          .int()
          .min(100)
          .optional()
          .describe('HAProxy check interval for a server going down or down (fastinter, downinter); default a quarter of proxyCheckIntervalMs, at least 100.'),
        proxyFallCount: z.number().int().min(1).default(2).describe('Failed checks before HAProxy marks a server down; default 2.'),
        proxyRiseCount: z.number().int().min(1).default(1).describe('Passed checks before HAProxy marks a server up; default 1.'),
        appFailAfterMs: z
          .number()
          .int()
          .min(500)
          .default(2000)
          .describe(
            "How long the active app machine must fail the observer's deep check (through the app to the database) before it fails over; default 2000.",
          ),
        appStartTimeoutMs: z
          .number()
          .int()
          .min(1000)
          .default(10_000)
          .describe(
            "How long a newly activated app machine may take to serve (pass the observer's deep check) before it counts as failing and the observer moves on; default 10000. On a cold standby it must cover the application's start-up time (a Java application server: a minute or more), or the observer fails over away from a machine that is still starting, again and again; a warm standby (`runsOn: every`) needs only seconds.",
          ),
        dbFailAfterMs: z
          .number()
          .int()
          .min(500)
          .default(2000)
          .describe(
            "How long the database primary must not serve (Patroni's REST API does not answer as a running primary) before the observer releases its leader lease (`database.failoverBy: observer`); default 2000.",
          ),
        agentLeaseMs: z
          .number()
          .int()
          .min(1000)
          .default(3000)
          .describe(
            "An agent that cannot confirm in etcd that its machine is active for this long stops the application by itself (self-fencing), unless every other app machine's agent confirms it may go on (the ride-out of an etcd outage; each such confirmation holds for this long, less a tenth); default 3000. Also the TTL (rounded up to whole seconds) of each app machine's claim in etcd: a newly activated machine waits until the old machine dropped its claim or it expired, so a failover away from a dead machine takes at least this long after its last renewal.",
          ),
      })
      .prefault({})
      .describe('Failover timers. loopWaitSeconds + 2 * retryTimeoutSeconds must not exceed ttlSeconds.'),
    proxy: z
      .strictObject({
        httpPort: port('Application HTTP port', 80),
        httpsPort: port('Application HTTPS port', 443),
        postgresPort: port('PostgreSQL primary port', 5000),
        statsPort: port('HAProxy stats page port', 7000),
        tlsBundle: safePath('haproxy.cfg', '/etc/vigil/tls/proxy.pem')
          .optional()
          .describe(
            'Where HAProxy reads the certificate bundle for :443 (certificate, chain, then key, PEM, mode 600) on the proxy machines, e.g. /etc/vigil/tls/proxy.pem. `vigil apply` puts it there: built from `tlsCertificate` and `tlsKey`, or issued by the cluster CA. Without it :443 is not served.',
          ),
        tlsCertificate: z
          .string()
          .min(1)
          .optional()
          .describe(
            "Your site certificate for :443 (PEM, then any intermediate certificates): a file on the admin's machine, relative to the cluster file. With `tlsKey`, `vigil apply` builds `tlsBundle` from the two on every proxy machine. Left out: apply issues the certificate from the cluster CA.",
          ),
        tlsKey: z
          .string()
          .min(1)
          .optional()
          .describe(
            "The private key of `tlsCertificate`, without a passphrase: a file on the admin's machine, relative to the cluster file, readable by its owner only (mode 600).",
          ),
        tlsDnsNames: z
          .array(
            z.string().regex(/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/, {
              message: 'must be a DNS name such as servicedesk.example.com',
            }),
          )
          .default([])
          .describe(
            "DNS names users reach the application by (e.g. servicedesk.example.com): put, beside the proxy machines' addresses, in the certificate `vigil apply` issues from the cluster CA. Not used with `tlsCertificate`.",
          ),
        virtualAddress: z
          .string()
          .regex(IPV4_RE, { message: 'must be an IPv4 address such as 10.0.0.100' })
          .optional()
          .describe(
            "The floating entry address (IPv4, on the proxy machines' subnet, used by no machine): keepalived on every proxy machine holds it on exactly one of them, the one whose HAProxy answers, and moves it to another within seconds when that HAProxy dies or hangs or its machine goes down. Clients and the application then use this address instead of a proxy machine's own. Needs `vrrpPassword` in the secrets file and VRRP between the proxy machines (IP protocol 112, unicast; docs/failure-semantics.md says where it cannot work). Left out: no keepalived, and the first proxy machine's address is the entry point.",
          ),
        vrrp: z
          .strictObject({
            interface: z
              .string()
              .regex(/^[A-Za-z0-9_.:-]{1,15}$/, { message: 'must be a network interface name such as eth0 or ens18' })
              .default('eth0')
              .describe(
                "The network interface, on every proxy machine, that holds the machine's own address (its name in `ip -4 addr`); keepalived adds the virtual address there and sends VRRP from it. The same name on every proxy machine; default eth0.",
              ),
            routerId: z
              .number()
              .int()
              .min(1)
              .max(255)
              .default(51)
              .describe(
                'VRRP virtual router id, 1 to 255: unique among the VRRP groups on that network (another cluster or router using the same id on the same segment would be taken for a peer); default 51.',
              ),
            advertIntervalSeconds: z
              .number()
              .int()
              .min(1)
              .max(10)
              .default(1)
              .describe(
                "Seconds between the holder's VRRP advertisements; another proxy takes the address over after three missed ones (about 3.5 s after a machine dies; at once when the holder's HAProxy fails its check, which releases it). Default 1.",
              ),
          })
          .prefault({})
          .describe('keepalived (VRRP) settings for `virtualAddress`.'),
      })
      .prefault({})
      .describe('The HAProxy entry point.'),
    application: z
      .strictObject({
        port: port('Port the application web server (nginx) listens on, on each app machine', 80),
        healthPath: strictText(
          /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*$/,
          'must be a URL path starting with / and without spaces or control characters',
          'write e.g. `/health`',
        )
          .default('/health')
          .describe('Health URL path, answered through the app and its database with a 2xx status (a redirect counts as a failure; default /health).'),
        services: z
          .array(serviceSchema)
          .default([
            { name: 'nginx', unit: 'vigil-nginx.service', runsOn: 'active' },
            { name: 'app', unit: 'vigil-refapp.service', runsOn: 'active' },
          ])
          .describe(
            'Services of the application, in start order (stopped in reverse); each runs on the active machine only, or on every app machine (`runsOn`).',
          ),
        activation: activationSchema
          .optional()
          .describe(
            'How the agent tells the application that its machine became active or stopped being active (docs/application-contract.md); required by services that run on `every` machine. Left out: the application learns it only by being started and stopped.',
          ),
        refappStartupSeconds: z
          .number()
          .int()
          .min(0)
          .max(3600)
          .default(60)
          .describe(
            'The reference application only: seconds after it starts before its health check answers 200, standing in for a slow application server (default 60; the lab uses 1).',
          ),
        syncDirs: z
          .array(syncDir())
          .default(['/var/lib/vigil/app/attachments'])
          .describe(
            "Directories file sync carries from the active app machine to the standbys: absolute paths of letters, digits and . _ / -, without `..`; not `/`, `/var`, `/var/lib`, `/var/lib/vigil`, `/opt`, `/home`, `/srv`, `/tmp` and the like themselves, and not in `/etc`, `/root`, `/usr`, `/bin`, `/sbin`, `/lib*`, `/boot`, `/dev`, `/proc`, `/sys`, `/run` or the database's and etcd's data.",
          ),
        patchDir: z
          .string()
          .startsWith('/', { message: 'must be an absolute path' })
          .optional()
          .describe(
            "The application's patch directory: `vigil airgap import` places a bundle's files there on the active machine, and every app machine's agent checks it against the bundle's manifest (docs/airgap.md). Must be one of `syncDirs`, so file sync carries it to the standbys.",
          ),
        passwordFiles: z
          .array(passwordFileSchema)
          .default([])
          .describe('Application config files holding the database password; Vigil keeps it identical in all of them.'),
        tlsEndpoints: z
          .array(tlsEndpointSchema)
          .default([])
          .describe(
            "The application's own HTTPS endpoints (besides HAProxy's :443): `vigil doctor` checks on every app machine that the settings name a certificate and key that exist, are readable by the service's user, match and are not expiring, and on the active machine that the port listens.",
          ),
        backendTls: backendTlsSchema.optional(),
      })
      .superRefine((a, ctx) => {
        if (a.patchDir !== undefined && !a.syncDirs.includes(a.patchDir))
          ctx.addIssue({
            code: 'custom',
            path: ['patchDir'],
            message: `${a.patchDir} is not one of application.syncDirs (${a.syncDirs.join(', ')}): file sync would not carry an import to the standbys; add it to syncDirs`,
          });
      })
      .prefault({})
      .describe('The application Vigil keeps available.'),
    fileSync: z
      .strictObject({
        sshPort: port('SSH port of the app machines for file sync pushes', 22),
        batchDelayMs: z
          .number()
          .int()
          .min(0)
          .max(5000)
          .default(20)
          .describe('How long the first change of a batch waits for others before it is pushed; default 20.'),
        reconcileIntervalSeconds: z
          .number()
          .int()
          .min(10)
          .default(600)
          .describe('Full reconciliation (rsync --delete, displaced files quarantined) to every standby this often, besides at start; default 600.'),
        checksum: z
          .boolean()
          .default(true)
          .describe('Full reconciliations compare file content (rsync --checksum) rather than size and time; default true. Reads every file on both sides.'),
        timeoutSeconds: z
          .number()
          .int()
          .min(5)
          .default(30)
          .describe('A push with no data moving for this long is abandoned and retried (rsync --timeout); default 30.'),
      })
      .prefault({})
      .describe('File sync between app machines: the active machine pushes `application.syncDirs` to the standbys with rsync over SSH.'),
    metrics: z
      .strictObject({
        enabled: z
          .boolean()
          .default(true)
          .describe('Whether every agent and observer serves Prometheus metrics on `/metrics` (docs/metrics.md); default true.'),
        listen: z
          .union([z.enum(['machine', 'loopback', 'any']), z.string().regex(IPV4_RE, { message: 'must be machine, loopback, any or an IPv4 address' })])
          .default('machine')
          .describe(
            "Where `/metrics` listens on each machine: `machine` (default), the machine's own address from `machines`; `loopback`, 127.0.0.1 only (a Prometheus or agent on the same machine); `any`, every address (0.0.0.0); or one IPv4 address, the same on every machine (e.g. a management network's, when each machine has one).",
          ),
        agentPort: port("Port of the agent's `/metrics` on every machine that runs an agent", 9710),
        observerPort: port("Port of the observer's `/metrics` on the observer machines", 9711),
        auth: z
          .enum(['none', 'mtls'])
          .default('none')
          .describe(
            "`none` (default): plain HTTP, readable by anyone who reaches the port (the metrics hold no secret: states, epochs, counts, durations); restrict it with `listen` or a firewall. `mtls`: HTTPS with the machine's certificate, and only a client certificate issued by the cluster CA is let in (give Prometheus one, e.g. the admin certificate from `vigil init`, as `tls_config` `cert_file`/`key_file` with `ca_file` the cluster CA).",
          ),
      })
      .prefault({})
      .describe(
        "Prometheus metrics of Vigil's own daemons. HAProxy's exporter (on `proxy.statsPort`, `/metrics`) and Patroni's (`database.patroniPort`, `/metrics`) are always on.",
      ),
    dashboard: z
      .strictObject({
        enabled: z
          .boolean()
          .default(true)
          .describe(
            'Whether every observer serves the web dashboard (docs/dashboard.md) over HTTPS on its own address; default true. It is served only when the secrets file names at least one user (`dashboardUsers`).',
          ),
        port: port("Port of the dashboard's HTTPS listener on the observer machines", 7720),
      })
      .prefault({})
      .describe(
        "The web dashboard: the cluster's state, live, in a browser (docs/dashboard.md). HTTPS with the observer machine's certificate from the cluster CA; users and roles in the secrets file.",
      ),
    alerts: alertsSchema,
  })
  .describe('vigil.yaml: the whole cluster.');

export type ClusterFile = z.infer<typeof clusterFileSchema>;

export const secretsSchema = z
  .strictObject({
    postgresPassword: z.string().min(8).describe('Password of the database superuser.'),
    replicationPassword: z.string().min(8).describe('Password of the replication user.'),
    appDbPassword: z.string().min(8).describe('Password of the application database user.'),
    patroniRestPassword: z.string().min(8).describe('Password for Patroni REST API write actions (user vigil).'),
    vrrpPassword: z
      .string()
      .regex(/^[A-Za-z0-9_.@%+=:,/-]{8,}$/, { message: 'must be 8 or more letters, digits or _ . @ % + = : , / -' })
      .optional()
      .describe(
        "Password of VRRP's authentication between the proxy machines' keepalived (`proxy.virtualAddress`; `vigil init` generates it). VRRP carries only its first 8 characters, in clear on the wire: it keeps a misconfigured neighbour out, not an attacker on that network.",
      ),
    dashboardUsers: z
      .array(
        z.strictObject({
          name: z
            .string()
            .regex(/^[A-Za-z0-9_.@-]{1,64}$/, { message: 'must be 1 to 64 letters, digits or _ . @ -' })
            .describe('Login name.'),
          role: z
            .enum(DASHBOARD_ROLES)
            .describe(
              '`viewer` sees the pages; `operator` may also act (switchover, failover, maintenance, acknowledgements, running doctor); `admin` the same (users are managed with `vigil dashboard user`, not from the page).',
            ),
          passwordHash: z
            .string()
            .regex(SCRYPT_HASH_RE, { message: 'must be scrypt$N$r$p$salt$hash as `vigil init` writes it (the password itself is never stored)' })
            .describe('The password, hashed with scrypt: `scrypt$N$r$p$<salt>$<hash>` (base64url), as `vigil init` and `vigil lab up` write it.'),
        }),
      )
      .optional()
      .refine((us) => !us || new Set(us.map((u) => u.name)).size === us.length, { message: 'two users have the same name' })
      .describe(
        'Who may log in to the dashboard (docs/dashboard.md). `vigil init` writes one `admin` user with a generated password (given once in dashboard-admin.password). Without users the dashboard is not served.',
      ),
    ...alertSecretsShape,
  })
  .describe('vigil.secrets.yaml: every secret of the cluster; mode 600.');

export type Secrets = z.infer<typeof secretsSchema>;

export interface Machine {
  name: string;
  address: string;
  roles: Role[];
  sshUser: string;
  sshPort: number;
}

/** The cluster after defaults and presets are applied: what every other module reads. */
export interface Cluster extends Omit<ClusterFile, 'machines'> {
  machines: Machine[];
  /** Where the cluster file was read from (for messages), or '<generated>'. */
  source: string;
}

export const withRole = (c: Cluster, role: Role): Machine[] => c.machines.filter((m) => m.roles.includes(role));

/**
 * Where clients and the application reach the cluster: the floating address keepalived holds on
 * one proxy machine (`proxy.virtualAddress`), else the first proxy machine's own address.
 */
export const entryAddress = (c: Cluster): string | undefined => c.proxy.virtualAddress ?? withRole(c, 'proxy')[0]?.address;

/**
 * Machines that run Vigil's agent: every app and database machine, and every proxy machine an
 * observer does not run on alone (a proxy of its own, or one of several observers' machines):
 * the acting observer reads and fences that HAProxy through the agent's API (src/agent/api.ts).
 * A proxy on the only observer's machine is reached through its local runtime socket instead.
 */
export const runsAgent = (c: Cluster, m: Pick<Machine, 'name' | 'roles'>): boolean =>
  m.roles.includes('app') || m.roles.includes('db') || (m.roles.includes('proxy') && !soleObserver(c, m));

const soleObserver = (c: Cluster, m: Pick<Machine, 'name' | 'roles'>): boolean => {
  const observers = withRole(c, 'observer');
  return observers.length === 1 && observers[0]!.name === m.name;
};

export const agentMachines = (c: Cluster): Machine[] => c.machines.filter((m) => runsAgent(c, m));
