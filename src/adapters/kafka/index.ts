/**
 * Kafka adapters (`flowkit/kafka`). Every `@platformatic/kafka` import of the project lives in this
 * folder. The driver is an optional peer dependency, loaded here by a dynamic import so that
 * without it, importing this entry fails with a FlowkitError (MISSING_DEPENDENCY) that says what
 * to install instead of the loader's "Cannot find package".
 */
import { importDependency } from '../../errors.ts'
import type * as BusModule from './bus.ts'

const bus: typeof BusModule = await importDependency('KafkaBus', '@platformatic/kafka', () => import('./bus.ts'))

/** The Kafka bus (see ./bus.ts). */
export const KafkaBus = bus.KafkaBus
export type KafkaBus = BusModule.KafkaBus
export type { KafkaBusOptions, KafkaSaslMechanism, KafkaSaslOptions } from './bus.ts'
