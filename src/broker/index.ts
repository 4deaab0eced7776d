export { EventBroker, type EventBrokerOptions, type RunnerStats } from './event-broker.js';
export { BoundedQueue } from './inbox.js';
