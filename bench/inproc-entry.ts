// What the bench calls in process (bench/inproc.mjs): the project's own identity, store and services,
// bundled by bench/lib/build-inproc.mjs into bench/.build/inproc.mjs. No behaviour of its own.
export { createIdentity, dataPaths } from '../src/data-dir.ts';
export { openStore } from '../src/storage/store.ts';
export { createServices } from '../src/context.ts';
export { systemClock } from '../src/clock.ts';
export { parseImportItems } from '../src/schemas.ts';
export { newId } from '../src/ids.ts';
export { subjectKey } from '../src/subjects.ts';
export { parseStrictJson } from '../src/tokens/strict-json.ts';
