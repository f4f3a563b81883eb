/**
 * Headless Chromium for the dashboard's browser tests and screenshots: the system's Chromium
 * (/usr/bin/chromium, or FLOWKIT_CHROMIUM) driven by playwright-core, a fresh profile per launch,
 * nothing reached but the dashboard (no first-run, sync, component updates or background network).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { BrowserContext } from 'playwright-core'

export const CHROMIUM = process.env['FLOWKIT_CHROMIUM'] ?? '/usr/bin/chromium'
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

export function haveChromium(): boolean {
  return existsSync(CHROMIUM)
}

/** A browser with a fresh profile (removed on close). */
export async function launchBrowser(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const { chromium } = await import('playwright-core')
  // launchPersistentContext: Chromium gets this new, empty --user-data-dir.
  const profile = mkdtempSync(join(tmpdir(), 'flowkit-ui-chromium-'))
  try {
    const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport: { width: 1400, height: 900 } })
    return {
      context,
      async close() {
        await context.close()
        rmSync(profile, { recursive: true, force: true })
      },
    }
  } catch (err) {
    rmSync(profile, { recursive: true, force: true })
    throw err
  }
}
