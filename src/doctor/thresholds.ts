/** The limits doctor judges by; docs/doctor.md lists them. */
export const THRESHOLDS = {
  /** A certificate that expires within this many days is a warning (expired: a failure). */
  certWarnDays: 30,
  /** Clock difference to the other machines beyond the measurement's uncertainty. */
  clockWarnMs: 250,
  clockFailMs: 1000,
  /**
   * Free space on a filesystem holding Vigil's data, logs or the application's files: below
   * either limit. The byte limits matter for small filesystems, where a percentage is little.
   */
  diskFailFreePercent: 5,
  diskFailFreeBytes: 32 * 2 ** 20,
  diskWarnFreePercent: 15,
  diskWarnFreeBytes: 2 ** 30,
  /** etcd's default backend quota (the generated etcd.yml sets none); beyond it etcd refuses writes. */
  etcdQuotaBytes: 2 * 2 ** 30,
  etcdWarnQuotaFraction: 0.8,
  /** Replication lag beyond this fraction of maximumLagOnFailoverBytes is a warning; beyond all of it, a failure. */
  lagWarnFraction: 0.5,
} as const;
