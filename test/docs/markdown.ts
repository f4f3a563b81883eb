/**
 * Reading the docs' Markdown for the doc tests: fenced code blocks (with the line they start on
 * and the heading they sit under), a section by heading, and relative links.
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'

export const ROOT = resolve(import.meta.dirname, '..', '..')

export interface CodeBlock {
  lang: string
  code: string
  /** 1-based line of the opening fence. */
  line: number
  /** The nearest heading above the block. */
  heading: string
}

/** The fenced code blocks of a Markdown text, in order. */
export function codeBlocks(md: string): CodeBlock[] {
  const out: CodeBlock[] = []
  const lines = md.split('\n')
  let heading = ''
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i] as string
    const h = /^#{1,6}\s+(.*)$/.exec(text)
    if (h) {
      heading = (h[1] as string).trim()
      continue
    }
    const open = /^```(\S*)\s*$/.exec(text)
    if (!open) continue
    const start = i
    const body: string[] = []
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i] as string); i++) body.push(lines[i] as string)
    out.push({ lang: open[1] ?? '', code: `${body.join('\n')}\n`, line: start + 1, heading })
  }
  return out
}

/** The text of the `## title` section (up to the next heading of the same or a higher level). */
export function section(md: string, title: string): string {
  const lines = md.split('\n')
  const start = lines.findIndex((l) => /^#{1,6}\s/.test(l) && l.replace(/^#+\s+/, '').trim() === title)
  if (start < 0) throw new Error(`no section ${JSON.stringify(title)}`)
  const level = (/^#+/.exec(lines[start] as string)?.[0] ?? '#').length
  let end = lines.length
  for (let i = start + 1; i < lines.length; i++) {
    const m = /^(#+)\s/.exec(lines[i] as string)
    if (m && (m[1] as string).length <= level) {
      end = i
      break
    }
  }
  return lines.slice(start, end).join('\n')
}

export function readDoc(path: string): string {
  return readFileSync(join(ROOT, path), 'utf8')
}

/**
 * The relative links of a Markdown file (`[text](target)`, outside code blocks) whose target file
 * does not exist; `#anchors` are checked against the target's headings.
 */
export function brokenLinks(path: string, md: string = readDoc(path)): string[] {
  const prose = md.replace(/^```[\s\S]*?^```\s*$/gm, '').replace(/`[^`\n]*`/g, '')
  const broken: string[] = []
  for (const m of prose.matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = m[1] as string
    if (/^[a-z]+:/i.test(target)) continue // https:, mailto:
    const [file, anchor] = target.split('#') as [string, string | undefined]
    const abs = file === '' ? join(ROOT, path) : resolve(dirname(join(ROOT, path)), file)
    if (!existsSync(abs)) {
      broken.push(`${target} (no file ${abs.slice(ROOT.length + 1)})`)
      continue
    }
    if (anchor !== undefined && abs.endsWith('.md') && !anchors(readFileSync(abs, 'utf8')).has(anchor)) {
      broken.push(`${target} (no heading #${anchor})`)
    }
  }
  return broken
}

/** GitHub's anchors of a Markdown text's headings. */
export function anchors(md: string): Set<string> {
  const out = new Set<string>()
  const seen = new Map<string, number>()
  for (const m of md.replace(/^```[\s\S]*?^```\s*$/gm, '').matchAll(/^#{1,6}\s+(.*)$/gm)) {
    const base = (m[1] as string)
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-')
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    out.add(n === 0 ? base : `${base}-${n}`)
  }
  return out
}
