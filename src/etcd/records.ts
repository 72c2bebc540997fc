/**
 * The values Vigil keeps in etcd, checked when read: a key written by hand or by another version
 * becomes a clear ETCD_DATA error naming the key, not an undefined field deep in the observer.
 */
import { z } from 'zod';
import {
  DOCTOR_SOURCES,
  type DoctorRun,
  EVENT_TYPES,
  STATES,
  type ActiveRecord,
  type AirgapRecord,
  type Maintenance,
  type ObserverLeader,
  type ObserverState,
  type OperatorRequest,
  type RequestAnswer,
  type ServingClaim,
  type VigilEvent,
} from '../model/ha.ts';
import { badData } from './call.ts';

const activeSchema = z.object({
  node: z.string().min(1),
  epoch: z.number().int().nonnegative(),
  since: z.string(),
  reason: z.string(),
  requestId: z.string().min(1).optional(),
});

const claimSchema = z.object({ node: z.string().min(1), epoch: z.number().int().nonnegative(), since: z.string() });

const maintenanceSchema = z.object({ since: z.string(), by: z.string(), reason: z.string() });

const leaderSchema = z.object({ id: z.string().min(1), host: z.string(), since: z.string() });

const observerStateSchema = z.object({
  state: z.enum(STATES),
  reason: z.string(),
  since: z.string(),
  epoch: z.number().int().nonnegative().nullable(),
  by: z.string().min(1),
});

const requestStamp = {
  id: z.string().min(1),
  at: z.string(),
  epoch: z.number().int().nonnegative().optional(),
  by: z.string().min(1).max(200).optional(),
};

const requestSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('switchover'), to: z.string().min(1).optional(), ...requestStamp }),
  z.object({ kind: z.literal('failover'), to: z.string().min(1), ...requestStamp }),
]);

const answerSchema = z.object({ id: z.string().min(1), ok: z.boolean(), message: z.string(), at: z.string() });

const eventSchema = z.object({
  seq: z.number().int().positive().optional(),
  at: z.string(),
  type: z.enum(EVENT_TYPES),
  node: z.string().optional(),
  epoch: z.number().int().nonnegative().optional(),
  message: z.string(),
  details: z.record(z.string(), z.unknown()).optional(),
});

const airgapSchema = z.object({
  sequence: z.number().int().nonnegative(),
  bundleId: z.string().min(1),
  manifestSha256: z.string().regex(/^[0-9a-f]{64}$/),
  node: z.string().min(1),
  importedAt: z.string(),
  backup: z.object({ machine: z.string().min(1), path: z.string().min(1) }).nullable(),
});

const doctorRunSchema = z.object({
  source: z.enum(DOCTOR_SOURCES),
  by: z.string().min(1).max(200),
  at: z.string(),
  report: z.record(z.string(), z.unknown()),
});

export const schemas = {
  doctorRun: doctorRunSchema as z.ZodType<DoctorRun>,
  airgap: airgapSchema as z.ZodType<AirgapRecord>,
  active: activeSchema as z.ZodType<ActiveRecord>,
  claim: claimSchema as z.ZodType<ServingClaim>,
  maintenance: maintenanceSchema as z.ZodType<Maintenance>,
  leader: leaderSchema as z.ZodType<ObserverLeader>,
  observerState: observerStateSchema as z.ZodType<ObserverState>,
  request: requestSchema as z.ZodType<OperatorRequest>,
  answer: answerSchema as z.ZodType<RequestAnswer>,
  event: eventSchema as z.ZodType<VigilEvent>,
};

/** Parses a stored JSON value; `key` is the full etcd key, for the error message. */
export function decode<T>(schema: z.ZodType<T>, op: string, key: string, value: Buffer | string): T {
  let json: unknown;
  try {
    json = JSON.parse(value.toString());
  } catch {
    throw badData(op, key, 'unexpected value: not JSON');
  }
  const r = schema.safeParse(json);
  if (!r.success) throw badData(op, key, `unexpected value: ${issues(r.error)}`);
  return r.data;
}

/** Checks a value before it is written, so a caller's bug never reaches etcd. */
export function encode<T>(schema: z.ZodType<T>, op: string, key: string, value: T): string {
  const r = schema.safeParse(value);
  if (!r.success) throw badData(op, key, `refusing to write an invalid value: ${issues(r.error)}`, 'this is a bug in the caller of the store: report it');
  return JSON.stringify(r.data);
}

function issues(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.join('.') || '(value)'}: ${i.message}`).join('; ');
}
