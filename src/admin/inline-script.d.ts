// `import script from './x.ts?script'`: the module bundled into one inline script, as text
// (scripts/admin-console.mjs; the build and the test run both make it).
declare module '*?script' {
  const script: string;
  export default script;
}
