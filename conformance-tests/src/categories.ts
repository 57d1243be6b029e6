import { CATEGORIES, type Category } from './check.js';

/** A category name the suite does not have, or a choice that leaves nothing to run. */
export class CategoryError extends Error {}

/** Names given comma-separated, repeated, or both (`--only api,qrexec --only vchan`). */
function names(values: readonly string[] | undefined): string[] | undefined {
  return values
    ?.flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v !== '');
}

/**
 * The categories to run: those `--only` names (every category without it),
 * less those `--skip` names; undefined means all. The lifecycle steps that
 * start guests still run when a chosen category needs them (selectChecks).
 */
export function chooseCategories(
  only: readonly string[] | undefined,
  skip: readonly string[] | undefined,
): Category[] | undefined {
  const chosen = names(only);
  const skipped = names(skip);
  const unknown = [...(chosen ?? []), ...(skipped ?? [])].filter(
    (c) => !(CATEGORIES as readonly string[]).includes(c),
  );
  if (unknown.length > 0) throw new CategoryError(`unknown categories: ${unknown.join(', ')}`);
  if (chosen === undefined && skipped === undefined) return undefined;
  const left = CATEGORIES.filter((c) => (chosen ?? CATEGORIES).includes(c) && !(skipped ?? []).includes(c));
  if (left.length === 0) throw new CategoryError('no category left to run');
  return left;
}
