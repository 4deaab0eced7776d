export { CredentialStore, deviceCredentials, serviceCredentials, generatePassword, type CredentialInfo, type CredentialKind } from './credentials.js';
export { LoginGuard, loginGuard, type LoginRefusal, type PasswordCheck } from './login-guard.js';
