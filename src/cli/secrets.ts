import { scrub } from '../db/connection.js';

/** Every database URL this process was given: `--database` / `-d` values and the URL variables. */
export function givenUrls(argv: readonly string[], env: NodeJS.ProcessEnv): string[] {
  const urls: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if ((a === '-d' || a === '--database') && argv[i + 1] !== undefined) urls.push(argv[i + 1]);
    else if (a.startsWith('--database=')) urls.push(a.slice('--database='.length));
    else if (a.startsWith('-d') && a.length > 2 && !a.startsWith('--')) urls.push(a.slice(2));
  }
  for (const name of ['ZSETUP_DATABASE_URL', 'DATABASE_URL'] as const) if (env[name]) urls.push(env[name]!);
  return urls;
}

/**
 * Masks the password of every given URL in `text`: the last guard before an error reaches the
 * terminal or a JSON document, whatever the message echoed (a driver error, a URL that does not parse).
 */
export function hidePasswords(text: string, argv: readonly string[], env: NodeJS.ProcessEnv): string {
  let out = text;
  for (const url of givenUrls(argv, env)) {
    if (URL.canParse(url)) {
      out = scrub(out, url);
      continue;
    }
    // A URL that does not parse still has its `user:secret@` part, to be masked by hand.
    const m = /\/\/[^:/@]*:([^@]+)@/.exec(url);
    if (m && m[1].length >= 3) out = out.split(m[1]).join('***');
  }
  return out;
}
