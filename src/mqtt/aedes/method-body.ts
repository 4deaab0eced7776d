/** A method's body, less its debug calls, whitespace and semicolons: what the adapter's guards compare with the source they were written against. */
export function bodyOf(method: (...args: never[]) => unknown): string {
  return method
    .toString()
    .replace(/^[^{]*\{|\}$/g, '')
    .replace(/debug\([^)]*\)/g, '')
    .replace(/[\s;]/g, '');
}
