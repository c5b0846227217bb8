// SQL migrations are imported as text: esbuild's text loader in the build, a vitest plugin in tests.
declare module '*.sql' {
  const text: string;
  export default text;
}
