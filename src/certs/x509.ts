import { webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect
// metadata polyfill loaded first; ESM evaluates these imports in this order.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

/**
 * Certificate generation with @peculiar/x509 on Node's WebCrypto (no openssl
 * shell-out). ECDSA P-256 keys: small, fast to make, and accepted by Node TLS,
 * OpenSSL-based clients such as mosquitto_pub, and the nRF9160 modem.
 */

type CryptoKey = webcrypto.CryptoKey;

const crypto = webcrypto;
const KEY_ALGORITHM: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING_ALGORITHM: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
/** Clocks of devices and servers disagree a little; certificates are valid from a minute ago. */
const CLOCK_SKEW_MS = 60_000;

/** A certificate and its private key, both PEM. */
export interface PemPair {
  cert: string;
  key: string;
}

export interface Issuer {
  cert: x509.X509Certificate;
  key: CryptoKey;
}

async function newKeyPair(): Promise<webcrypto.CryptoKeyPair> {
  return crypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']);
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  const pkcs8 = await crypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: new Date(now - CLOCK_SKEW_MS), notAfter: new Date(now + days * 86_400_000) };
}

/** A random positive 16-byte serial (RFC 5280 4.1.2.2: positive, at most 20 octets). */
function serialNumber(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] ?? 0) & 0x7f | 0x01;
  return Buffer.from(bytes).toString('hex');
}

/** Escapes a value for an RDN string (RFC 4514), though our names are plain. */
function cn(value: string): string {
  return `CN=${value.replace(/([,+"\\<>;=])/g, '\\$1')}`;
}

export async function createCa(commonName: string, days: number): Promise<PemPair> {
  const keys = await newKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serialNumber(),
      name: cn(commonName),
      ...validity(days),
      signingAlgorithm: SIGNING_ALGORITHM,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return { cert: cert.toString('pem'), key: await privateKeyPem(keys.privateKey) };
}

/** Parses a CA certificate and key (PKCS#8 EC P-256, as `createCa` writes them). */
export async function loadIssuer(certPem: string, keyPem: string): Promise<Issuer> {
  const cert = new x509.X509Certificate(certPem);
  const key = await crypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(keyPem), KEY_ALGORITHM, false, ['sign']);
  return { cert, key };
}

async function createLeaf(issuer: Issuer, commonName: string, days: number, extensions: x509.Extension[]): Promise<PemPair> {
  const keys = await newKeyPair();
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serialNumber(),
      subject: cn(commonName),
      issuer: issuer.cert.subject,
      ...validity(days),
      signingAlgorithm: SIGNING_ALGORITHM,
      publicKey: keys.publicKey,
      signingKey: issuer.key,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
        await x509.AuthorityKeyIdentifierExtension.create(issuer.cert, false, crypto),
        ...extensions,
      ],
    },
    crypto,
  );
  return { cert: cert.toString('pem'), key: await privateKeyPem(keys.privateKey) };
}

/** A TLS server certificate; each name becomes a DNS or IP subject alternative name. */
export async function createServerCertificate(issuer: Issuer, names: readonly string[], days: number): Promise<PemPair> {
  const unique = [...new Set(names)];
  const san = unique.map((name) => ({ type: isIP(name) ? ('ip' as const) : ('dns' as const), value: name }));
  return createLeaf(issuer, unique[0] ?? 'localhost', days, [
    new x509.ExtendedKeyUsageExtension([SERVER_AUTH], false),
    new x509.SubjectAlternativeNameExtension(san, false),
  ]);
}

/** A TLS client certificate for a device; the common name is its uid. */
export async function createClientCertificate(issuer: Issuer, uid: string, days: number): Promise<PemPair> {
  return createLeaf(issuer, uid, days, [new x509.ExtendedKeyUsageExtension([CLIENT_AUTH], false)]);
}

/** The common name of a PEM certificate, for messages and tests. */
export function commonNameOf(certPem: string): string | undefined {
  const cert = new x509.X509Certificate(certPem);
  return cert.subjectName.getField('CN')[0];
}

/** When a PEM certificate expires. */
export function notAfterOf(certPem: string): Date {
  return new x509.X509Certificate(certPem).notAfter;
}

/** A certificate's serial number as @peculiar/x509 prints it (hex). */
export function serialOf(certPem: string): string {
  return new x509.X509Certificate(certPem).serialNumber;
}

/** The issuer name of a DER certificate, formatted as `X509Crl.issuer` formats a CRL's. */
export function issuerOf(der: Uint8Array): string {
  return new x509.X509Certificate(der).issuer;
}

export interface CrlEntry {
  serial: string;
  revokedAt: Date;
}

/** A CRL signed by `issuer` listing `entries`, valid for `days` (RFC 5280 section 5). */
export async function createCrl(issuer: Issuer, entries: readonly CrlEntry[], days: number): Promise<string> {
  const now = Date.now();
  const crl = await x509.X509CrlGenerator.create(
    {
      issuer: issuer.cert.subject,
      thisUpdate: new Date(now - CLOCK_SKEW_MS),
      nextUpdate: new Date(now + days * 86_400_000),
      signingAlgorithm: SIGNING_ALGORITHM,
      signingKey: issuer.key,
      entries: entries.map((entry) => ({ serialNumber: entry.serial, revocationDate: entry.revokedAt, reason: x509.X509CrlReason.unspecified })),
    },
    crypto,
  );
  return crl.toString('pem');
}

/** One CRL of a file: whose certificates it revokes, and which. */
export interface CrlList {
  issuer: string;
  serials: string[];
}

/**
 * Parses every CRL in a PEM file and checks each one's signature with the CA
 * of its issuer name in `trustedPem` (the trust bundle): a CRL nobody we trust
 * signed could refuse any device, so it is an error, not a warning.
 */
export async function readCrls(crlPem: string, trustedPem: string): Promise<CrlList[]> {
  const trusted = x509.PemConverter.decode(trustedPem).map((der) => new x509.X509Certificate(der));
  const lists: CrlList[] = [];
  for (const der of x509.PemConverter.decode(crlPem)) {
    const crl = new x509.X509Crl(der);
    const signers = trusted.filter((ca) => ca.subject === crl.issuer);
    if (signers.length === 0) throw new Error(`CRL of "${crl.issuer}": no CA of that name in the trust bundle`);
    let verified = false;
    for (const ca of signers) if (await crl.verify({ publicKey: ca }, crypto)) verified = true;
    if (!verified) throw new Error(`CRL of "${crl.issuer}": its signature does not verify with that CA`);
    lists.push({ issuer: crl.issuer, serials: crl.entries.map((entry) => entry.serialNumber) });
  }
  return lists;
}
