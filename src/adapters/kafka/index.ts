/**
 * Kafka adapters (`flowkit/kafka`). Every `@platformatic/kafka` import of the project lives in this
 * folder.
 */
export { KafkaBus } from './bus.ts'
export type { KafkaBusOptions, KafkaSaslMechanism, KafkaSaslOptions } from './bus.ts'
