// The semaphore moved to src/util (the password checks use it too); kept here for the MQTT runner's imports.
export { Gate } from '../util/gate.js';
