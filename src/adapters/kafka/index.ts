/**
 * Kafka adapters (`flowkit/kafka`). Every `@platformatic/kafka` import of the project lives in this
 * folder. The driver is an optional peer dependency, loaded here by a dynamic import so that
 * without it, importing this entry fails with a FlowkitError (MISSING_DEPENDENCY) that says what
 * to install instead of the loader's "Cannot find package".
 */
import { importDependency } from '../../errors.ts'
import type * as AdminModule from './admin.ts'
import type * as BusModule from './bus.ts'

const [bus, admin]: [typeof BusModule, typeof AdminModule] = await importDependency('KafkaBus', '@platformatic/kafka', () =>
  Promise.all([import('./bus.ts'), import('./admin.ts')]),
)

/** The Kafka bus (see ./bus.ts). */
export const KafkaBus = bus.KafkaBus
export type KafkaBus = BusModule.KafkaBus
export const dropKafkaPrefix = admin.dropKafkaPrefix
export type { KafkaBusOptions, KafkaSaslMechanism, KafkaSaslOptions } from './bus.ts'
