export { CredentialStore, deviceCredentials, serviceCredentials, generatePassword, MIN_PASSWORD_LENGTH, type CredentialInfo, type CredentialKind } from './credentials.js';
export { LoginGuard, loginGuard, type LoginRefusal, type PasswordCheck } from './login-guard.js';
