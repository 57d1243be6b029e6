import { QubesInvalidTagError, QubesTagNotFoundError } from './errors.js';
import type { EventBus } from './events.js';
import type { Vm } from './vm.js';

export function validateTag(tag: string): void {
  if (tag === '') throw new QubesInvalidTagError('tag cannot be empty');
  if (!/^[A-Za-z0-9_-]+$/.test(tag)) throw new QubesInvalidTagError('disallowed characters');
}

/** A VM's tags; tag.List reports them sorted. */
export class Tags {
  private readonly values = new Set<string>();

  constructor(
    private readonly vm: Vm,
    private readonly events: EventBus,
  ) {}

  has(tag: string): boolean {
    return this.values.has(tag);
  }

  list(): string[] {
    return [...this.values].sort();
  }

  /** In insertion order, which is how qubes.xml keeps them. */
  inOrder(): string[] {
    return [...this.values];
  }

  /** Loading state: no events. */
  init(tag: string): void {
    this.values.add(tag);
  }

  /** Loading state: no events. */
  forget(tag: string): void {
    this.values.delete(tag);
  }

  add(tag: string): void {
    if (this.values.has(tag)) return;
    this.values.add(tag);
    this.events.fire(this.vm, `domain-tag-add:${tag}`, { tag: tag });
  }

  remove(tag: string): void {
    if (!this.values.has(tag)) throw QubesTagNotFoundError.forVm(this.vm.name, tag);
    this.values.delete(tag);
    this.events.fire(this.vm, `domain-tag-delete:${tag}`, { tag: tag });
  }
}
