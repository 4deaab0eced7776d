export { CredentialStore, deviceCredentials, serviceCredentials, generatePassword, type CredentialInfo, type CredentialKind } from './credentials.js';
