import t from 'tap';
import { randomBytes, scryptSync } from 'node:crypto';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { USERS_BUCKET } from '../../protocol/names.js';
import { startSystem, type ApiError, type Session } from './fixture.js';

// Sign-in and names that reach storage (issue 23): names that are not usernames, lookups by name,
// and password hashes at today's cost with old ones upgraded at the next sign-in.

t.test('sign-in, lookups by name and password hashes', async (t) => {
  const s = await startSystem(t);
  const users = await new Kvm(jetstream(s.nc)).open(USERS_BUCKET);

  await t.test(
    'a name that could never be registered is refused like a wrong password, never as unavailable',
    async (t) => {
      for (const username of ['>', 'a b', 'a*', '$KV', 'user.x..y', '.abc', 'abc.']) {
        const r = await s.http<ApiError>('POST', '/v1/sessions', { username, password: 'long enough' });
        t.equal(r.status, 401, username);
        t.equal(r.body.error.code, 'invalid_credentials', username);
      }
      for (const username of ['...', 'a..b', '.abc', 'abc.', 'a>b', 'a b']) {
        const r = await s.http<ApiError>('POST', '/v1/users', { username, password: 'long enough' });
        t.equal(r.status, 400, `registering ${username}`);
        t.equal(r.body.error.code, 'invalid_request');
      }
      const dotted = await s.http('POST', '/v1/users', { username: 'dot.ted-name_1', password: 'long enough' });
      t.equal(dotted.status, 201, `single dots inside a name are fine: ${JSON.stringify(dotted.body)}`);
      t.equal(
        (await s.http('POST', '/v1/sessions', { username: 'dot.ted-name_1', password: 'long enough' })).status,
        200,
      );
    },
  );

  await t.test('a sort named like an object property is an unknown sort, not a database error', async (t) => {
    for (const sort of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
      const r = await s.http<ApiError>('GET', `/v1/auctions?sort=${sort}`);
      t.equal(r.status, 400, sort);
      t.same(r.body.error, { code: 'invalid_request', message: 'sort must be ending_soon, newest or price' }, sort);
    }
    t.equal((await s.http('GET', '/v1/auctions?sort=price')).status, 200);
  });

  await t.test(
    'new hashes are scrypt N=2^17; an older N=2^14 hash still signs in and is upgraded, keeping the user id',
    async (t) => {
      const created = await s.http('POST', '/v1/users', { username: 'fresh_user', password: 'long enough' });
      t.equal(created.status, 201, JSON.stringify(created.body));
      const fresh = (await users.get('user.fresh_user'))!.json<{ scrypt: { N: number; r: number; p: number } }>();
      t.same(fresh.scrypt, { N: 131_072, r: 8, p: 1 }, "a new user gets today's cost");

      // A record as the gateway wrote them before: no cost recorded, N=2^14.
      const salt = randomBytes(16);
      const legacy = {
        username: 'legacy_user',
        salt: salt.toString('base64'),
        hash: scryptSync('old password', salt, 32, { N: 16_384, r: 8, p: 1 }).toString('base64'),
        createdAt: Date.now(),
      };
      const userId = await users.create('user.legacy_user', JSON.stringify(legacy));
      t.equal(
        (await s.http('POST', '/v1/sessions', { username: 'legacy_user', password: 'wrong password' })).status,
        401,
      );
      t.equal((await users.get('user.legacy_user'))!.revision, userId, 'a wrong password upgrades nothing');
      const first = await s.http<Session>('POST', '/v1/sessions', {
        username: 'Legacy_User',
        password: 'old password',
      });
      t.equal(first.status, 200);
      t.equal(first.body.userId, userId, 'the user id is the revision of the original create');
      const upgraded = await users.get('user.legacy_user');
      const record = upgraded!.json<{
        scrypt: { N: number };
        hash: string;
        userId: number;
        username: string;
        createdAt: number;
      }>();
      t.equal(record.scrypt.N, 131_072, "the hash was rewritten at today's cost");
      t.not(record.hash, legacy.hash);
      t.match(record, { userId, username: 'legacy_user', createdAt: legacy.createdAt });
      t.ok(upgraded!.revision > userId);
      const second = await s.http<Session>('POST', '/v1/sessions', {
        username: 'legacy_user',
        password: 'old password',
      });
      t.equal(second.status, 200, 'the upgraded hash signs in');
      t.equal(second.body.userId, userId, 'with the same user id');
      t.equal(
        (await users.get('user.legacy_user'))!.revision,
        upgraded!.revision,
        'an up-to-date hash is not rewritten',
      );
      t.equal(
        (await s.http('POST', '/v1/sessions', { username: 'legacy_user', password: 'wrong password' })).status,
        401,
      );
    },
  );
});
