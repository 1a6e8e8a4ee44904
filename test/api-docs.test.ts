import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * Every export of the package's entry points (keeper, keeper/cdk, keeper/testing) carries a
 * TSDoc comment, so that editors show users what each one is for.
 */
const root = join(import.meta.dirname, '..');
const entries = { keeper: 'lib/index.ts', 'keeper/cdk': 'lib/cdk/index.ts', 'keeper/testing': 'lib/testing.ts' };

describe('the API reference', () => {
  const program = ts.createProgram(
    Object.values(entries).map((f) => join(root, f)),
    { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, strict: true, skipLibCheck: true, noEmit: true },
  );
  const checker = program.getTypeChecker();

  it.each(Object.entries(entries))('%s: every export is documented', (_name, file) => {
    const module = checker.getSymbolAtLocation(program.getSourceFile(join(root, file))!)!;
    const exports = checker.getExportsOfModule(module);
    expect(exports.length).toBeGreaterThan(3);
    const undocumented = exports
      .filter((e) => {
        const target = e.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(e) : e;
        return ts.displayPartsToString(target.getDocumentationComment(checker)).trim() === '';
      })
      .map((e) => e.name);
    expect(undocumented).toEqual([]);
  });
});
