/**
 * The keys of the reference application's properties file (PATHS.refappConfig): what its
 * generator (src/render/refapp.ts) writes and the application (src/refapp/properties.ts) reads.
 * Here, not in src/refapp/, so the generator, which is part of the CLI, needs no module of the
 * application: the CLI's bundle carries none (src/apply/artifact.ts).
 */

/** Keys the app reads; the first six have no default. */
export const REFAPP_KEYS = {
  node: 'vigil.node',
  dbHost: 'db.host',
  dbPort: 'db.port',
  dbName: 'db.name',
  dbUser: 'db.user',
  dbPassword: 'spring.datasource.password',
  httpHost: 'http.host',
  httpPort: 'http.port',
  attachmentsDir: 'attachments.dir',
  /** Where its HTTPS settings are (a JSON file with REFAPP_HTTPS_KEYS); left out: no HTTPS port. */
  httpsSettings: 'https.settings',
  /** Seconds after start before /health answers 200 (a slow application server); default 60. */
  startupSeconds: 'startup.seconds',
  /** Loopback port of its activation endpoint (REFAPP_CONTROL_PORT by default). */
  controlPort: 'control.port',
  /** Loopback port of its analytics service (REFAPP_ANALYTICS_PORT by default). */
  analyticsPort: 'analytics.port',
} as const;

/** The start-up time of the reference application when its properties file names none. */
export const REFAPP_DEFAULT_STARTUP_SECONDS = 60;

/** Its activation endpoint's path, on the control port. */
export const REFAPP_ACTIVATION_PATH = '/vigil/activation';

/**
 * The keys of the reference application's HTTPS settings file (PATHS.refappSettings), JSON as
 * .NET's appsettings.json: nested under `Https`, written as dotted paths (src/facts/app-settings.ts).
 */
export const REFAPP_HTTPS_KEYS = {
  port: 'Https.Port',
  certificate: 'Https.CertificateFilePath',
  key: 'Https.KeyFilePath',
} as const;
