// Lint Cypher statements with Neo4j's own linter (@neo4j-cypher/language-support, pinned in
// package.json). Used by tests/test_cypher_lint.py; install with `npm ci --prefix tests/lint`.
//
//   echo '["MATCH (n) RETURN n", "MATCH (n RETURN n"]' | node tests/lint/lint.mjs
//
// stdin: a JSON array of statements, or {"statements": [...], "schema": {labels, relationshipTypes,
// propertyKeys, graphSchema}}. With a schema, labels / types / properties outside it are reported as
// warnings (the linter's own severity).
// stdout: a JSON array with, per statement, an array of diagnostics
//   {severity: "error" | "warning" | "info" | "hint", message, start, end, line, column}
// (start/end: character offsets in the statement; line/column: 1-based).
//
// Functions and procedures are checked against Neo4j's built-in registry that ships with the package
// (`testData.mockSchema`, recorded from a Neo4j 5 server) without plugins (APOC, GDS), because
// docker-compose.yml runs a plain neo4j:5-community. Without a registry the linter would accept any
// function name. "Parameter $x is not defined" errors are dropped: every statement takes $parameters
// and the linter cannot know them.
import { lintCypherQuery, isNotParamError, testData } from '@neo4j-cypher/language-support';

const CYPHER_VERSION = 'CYPHER 5';
const PLUGIN_NAMESPACES = ['apoc.', 'gds.'];
const SEVERITY = { 1: 'error', 2: 'warning', 3: 'info', 4: 'hint' };

function builtIns() {
  const functions = Object.fromEntries(
    Object.entries(testData.mockSchema.functions[CYPHER_VERSION]).filter(([, fn]) => fn.isBuiltIn),
  );
  const procedures = Object.fromEntries(
    Object.entries(testData.mockSchema.procedures[CYPHER_VERSION]).filter(
      ([name]) => !PLUGIN_NAMESPACES.some((prefix) => name.startsWith(prefix)),
    ),
  );
  return {
    functions: { [CYPHER_VERSION]: functions },
    procedures: { [CYPHER_VERSION]: procedures },
  };
}

function readStdin() {
  return new Promise((resolve, reject) => {
    let text = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk) => (text += chunk));
    process.stdin.on('end', () => resolve(text));
    process.stdin.on('error', reject);
  });
}

const input = JSON.parse(await readStdin());
const statements = Array.isArray(input) ? input : input.statements;
if (!Array.isArray(statements) || statements.some((s) => typeof s !== 'string')) {
  console.error('lint.mjs: expected a JSON array of statement strings on stdin');
  process.exit(2);
}
const dbSchema = { defaultLanguage: CYPHER_VERSION, ...builtIns(), ...(Array.isArray(input) ? {} : input.schema ?? {}) };

const out = statements.map((statement) => {
  const { diagnostics } = lintCypherQuery(statement, dbSchema, { consoleCommandsEnabled: false });
  return diagnostics.filter(isNotParamError).map((d) => ({
    severity: SEVERITY[d.severity] ?? String(d.severity),
    message: d.message,
    start: d.offsets.start,
    end: d.offsets.end,
    line: d.range.start.line + 1,
    column: d.range.start.character + 1,
  }));
});
process.stdout.write(JSON.stringify(out) + '\n');
