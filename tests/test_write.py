"""The write side of klipyfs, with real programs on a real mount.

Every test mounts afresh, primes what it needs (reads, listings), resets the
emulator's request log, does one user-level thing with a real program, and
then checks three witnesses:

  * the text of the file as read back through the mount;
  * the record on the server (the emulator's store);
  * the exact list of requests the daemon made after setup (method and
    path, and for PATCH the set of body keys).
"""

import errno
import json
import os
import re
import tempfile
import time

import pytest

import editors
from mountutil import canonical

# How long a daemon may take to deliver a write once the server is back.
DELIVERY_TIMEOUT = 30.0


# ---------------------------------------------------------------- helpers

def text(rec):
	"""The text a record file must hold (str)."""
	return canonical(rec).decode()


def api_path(path):
	"""'/api/v1/people/x?y' or 'http://h/api/v1/people/x' -> '/people/x'."""
	path = re.sub(r'^[a-z]+://[^/]+', '', path)
	path = path.split('?', 1)[0]
	i = path.find('/api/v1')
	if i >= 0:
		path = path[i + len('/api/v1'):]
	return path or '/'


def body_of(req):
	b = req.get('body')
	if isinstance(b, (bytes, bytearray)):
		b = b.decode()
	if isinstance(b, str):
		try:
			b = json.loads(b) if b.strip() else None
		except ValueError:
			pass
	return b


def body_keys(req):
	b = body_of(req)
	return set(b) if isinstance(b, dict) else b


def log_of(emu):
	"""The emulator's request log as [(method, path)]."""
	return [(r['method'], api_path(r['path'])) for r in emu.requests()]


def settle(emu, want=0, timeout=15.0, quiet=0.4):
	"""
	Wait until the emulator has seen at least @want requests and then none
	for @quiet seconds; return the raw request list.
	"""
	deadline = time.monotonic() + timeout
	last = None
	since = time.monotonic()
	while True:
		reqs = emu.requests()
		n = len(reqs)
		now = time.monotonic()
		if n != last:
			last, since = n, now
		if n >= want and now - since >= quiet:
			return reqs
		if now > deadline:
			return reqs
		time.sleep(0.05)


def drop_misses(reqs, misses):
	"""
	@reqs without one negative lookup (GET answered 404) per path in
	@misses: looking up a name that is not in the cache may cost a GET
	before the daemon knows the name is free.
	"""
	left = list(misses)
	out = []
	for r in reqs:
		p = api_path(r['path'])
		if r['method'] == 'GET' and r.get('status') == 404 and p in left:
			left.remove(p)
			continue
		out.append(r)
	return out


def expect(emu, want, timeout=15.0, misses=()):
	"""
	Settle, then assert the request log is exactly @want, a list of
	(method, path) or (method, path, body-key-set) tuples, apart from
	negative lookups of the paths in @misses (see drop_misses).  Returns the
	raw request list without those.
	"""
	reqs = settle(emu, len(want), timeout)
	reqs = drop_misses(reqs, misses)
	got = [(r['method'], api_path(r['path'])) for r in reqs]
	assert got == [w[:2] for w in want], 'requests: %s' % _fmt(reqs)
	for r, w in zip(reqs, want):
		if len(w) > 2:
			assert body_keys(r) == set(w[2]), \
				'%s %s body %r' % (r['method'], r['path'],
						  body_of(r))
	return reqs


def _fmt(reqs):
	return '\n  ' + '\n  '.join('%s %s -> %s %s' % (
		r['method'], api_path(r['path']), r.get('status'),
		json.dumps(body_of(r))[:200]) for r in reqs)


def records(emu, coll):
	"""{id: record} of what the emulator holds."""
	recs = emu.records(coll)
	if isinstance(recs, dict):
		if 'data' in recs:
			recs = recs['data']
		else:
			return recs
	return {r['id']: r for r in recs}


def server(emu, coll, rid):
	return records(emu, coll).get(rid)


def read(path):
	with open(path, 'rb') as f:
		return f.read().decode()


def write_file(path, data, mode=os.O_WRONLY | os.O_TRUNC):
	"""write(2) @data to @path and close; return None or the errno of close."""
	fd = os.open(path, mode, 0o644)
	try:
		os.write(fd, data.encode())
	except OSError:
		os.close(fd)
		raise
	try:
		os.close(fd)
	except OSError as e:
		return e.errno
	return None


def errno_of(fn, *args):
	try:
		fn(*args)
	except OSError as e:
		return e.errno
	return None


def api_call(emu, method, path, body=None):
	"""Talk to the emulator as another client would (not through the mount)."""
	r = emu.call(method, path, body=body)
	return r.status, r.json


def plain(s):
	return isinstance(s, str) and re.fullmatch(r'[A-Za-z][A-Za-z .\'-]*',
						    s) is not None


def people(emu, n=1, skip=0):
	"""@n people with plain ASCII first names and an email."""
	out = [r for r in records(emu, 'people').values()
	       if plain(r.get('firstName')) and
	       isinstance(r.get('email'), str)]
	assert len(out) >= skip + n, 'emulator has too few people'
	return out[skip:skip + n]


def person(emu, m, skip=0):
	"""One person, read once through the mount (primed), log reset."""
	rec = people(emu, 1, skip)[0]
	path = m.p('people', rec['id'] + '.json')
	assert read(path) == text(rec)
	emu.reset()
	return rec, path


def with_field(txt, key, value):
	"""@txt (a record file) with the top-level @key set to @value."""
	rec = json.loads(txt)
	assert key in rec, 'no top-level %s in %r' % (key, txt)
	rec[key] = value
	return text(rec)


def first_name_re(rec):
	return '"firstName": %s' % json.dumps(rec['firstName'])


def status_files(m, what):
	"""The "file" of every entry of .klipy/status[@what]."""
	return [e.get('file', '') for e in m.status().get(what, [])]


def listed(entries, coll, name):
	return any(f == '%s/%s' % (coll, name) or f.endswith('/%s/%s' %
							      (coll, name))
		   for f in entries)


def assert_saved(emu, m, rec, path, key, value):
	"""One PATCH with only @key went out; server and file agree on @value."""
	expect(emu, [('PATCH', '/people/' + rec['id'], {key})])
	new = server(emu, 'people', rec['id'])
	assert new[key] == value
	for k in rec:
		if k not in (key, 'updatedTime'):
			assert new[k] == rec[k], k
	assert read(path) == text(new)
	# Reading the result back costs nothing: the PATCH answer is the record.
	expect(emu, [('PATCH', '/people/' + rec['id'], {key})])
	return new


def local_copy(tmp_path, name, data):
	p = tmp_path / 'local'
	p.mkdir(exist_ok=True)
	p = p / name
	p.write_bytes(data.encode())
	return str(p)


# ---------------------------------------------------------------- editors

@pytest.mark.parametrize('backupcopy', [None, 'yes', 'no'],
			 ids=['default', 'backupcopy-yes', 'backupcopy-no'])
def test_vim_save_patches_only_the_changed_field(emulator, mnt, backupcopy):
	rec, path = person(emulator, mnt)
	before = read(path)
	n_people = len(records(emulator, 'people'))
	editors.vim_substitute(path, first_name_re(rec), '"firstName": "Vimmed"',
			       backupcopy=backupcopy)
	assert_saved(emulator, mnt, rec, path, 'firstName', 'Vimmed')
	assert len(records(emulator, 'people')) == n_people
	# The backup (X.json~) is a local scratch file holding the old text;
	# the swap file is gone.
	assert read(path + '~') == before
	assert not os.path.exists(mnt.p('people', '.%s.json.swp' % rec['id']))
	expect(emulator, [('PATCH', '/people/' + rec['id'], {'firstName'})])


def test_emacs_backup_by_rename_save_patches_once(emulator, mnt):
	# Emacs lists the directory while saving (it looks for numbered
	# backups), which costs the people listing unless it is cached.
	os.listdir(mnt.p('people'))
	rec, path = person(emulator, mnt)
	before = read(path)
	editors.emacs_substitute(path, '"firstName": "[^"]*"',
				 '"firstName": "Emacsed"')
	assert_saved(emulator, mnt, rec, path, 'firstName', 'Emacsed')
	# The first save made a backup by renaming the record to X.json~.
	assert read(path + '~') == before
	assert not os.path.lexists(mnt.p('people', '.#%s.json' % rec['id']))


def test_nano_in_place_save_patches_once(emulator, mnt, tmp_path):
	rec, path = person(emulator, mnt)
	t = editors.nano_start(str(tmp_path), path)
	try:
		editors.nano_replace(t, first_name_re(rec),
				     '"firstName": "Nanoed"')
		editors.nano_write(t)
		settle(emulator, 1)
		editors.nano_quit(t)
		assert t.wait_exit(), t.screen()
	finally:
		t.kill()
	assert_saved(emulator, mnt, rec, path, 'firstName', 'Nanoed')


# ---------------------------------------------------------------- tools

def _sed_ere(s):
	return re.sub(r'([\\.^$*+?()\[\]{}|/])', r'\\\1', s)


def test_sed_i_over_many_files_patches_only_changed_ones(emulator, mnt):
	recs = people(emulator, 20)
	paths = [mnt.p('people', r['id'] + '.json') for r in recs]
	os.listdir(mnt.p('people'))
	for r, p in zip(recs, paths):
		assert read(p) == text(r)
	emulator.reset()
	hit = recs[3:20:4][:5]
	assert len(hit) == 5
	alt = '|'.join(_sed_ere(r['email']) for r in hit)
	script = 's/"email": "(%s)"/"email": "sed.\\1"/' % alt
	editors.run(['sed', '-i', '-E', script] + paths)
	want = sorted(('PATCH', '/people/' + r['id']) for r in hit)
	reqs = settle(emulator, 5)
	assert sorted(log_of(emulator)) == want, _fmt(reqs)
	for r in reqs:
		assert body_keys(r) == {'email'}
	now = records(emulator, 'people')
	for r, p in zip(recs, paths):
		if r in hit:
			assert now[r['id']]['email'] == 'sed.' + r['email']
		else:
			assert now[r['id']] == r
		assert read(p) == text(now[r['id']])
	assert sorted(log_of(emulator)) == want


def test_perl_pi_patches_once(emulator, mnt):
	rec, path = person(emulator, mnt)
	editors.run(['perl', '-pi', '-e',
		     's/"firstName": "[^"]*"/"firstName": "Perled"/', path])
	assert_saved(emulator, mnt, rec, path, 'firstName', 'Perled')


def test_shell_redirect_full_rewrite_patches_once(emulator, mnt):
	rec, path = person(emulator, mnt)
	new = with_field(read(path), 'title', 'Redirected')
	editors.run(['sh', '-c', 'cat > "$1"', 'sh', path], input=new,
		    stdin=None)
	assert_saved(emulator, mnt, rec, path, 'title', 'Redirected')


def test_shell_append_making_invalid_json_is_rejected(emulator, mnt):
	rec, path = person(emulator, mnt)
	before = read(path)
	extra = '{"title": "Appended"}\n'
	err = write_file(path, extra, os.O_WRONLY | os.O_APPEND)
	assert err == errno.EINVAL
	expect(emulator, [])
	assert read(mnt.p('.klipy', 'rejected', 'people',
			  rec['id'] + '.json')) == before + extra
	assert server(emulator, 'people', rec['id']) == rec
	# The shell sees the same refusal (close of its redirection).
	editors.run(['sh', '-c', 'printf "%s" "$2" >> "$1"', 'sh', path, extra],
		    check=False)
	expect(emulator, [])
	assert server(emulator, 'people', rec['id']) == rec


@pytest.mark.parametrize('preserve', [False, True], ids=['cp', 'cp-p'])
def test_cp_local_edit_over_record_patches_once(emulator, mnt, tmp_path,
						 preserve):
	rec, path = person(emulator, mnt)
	src = local_copy(tmp_path, rec['id'] + '.json',
			 with_field(read(path), 'title', 'Copied'))
	editors.run(['cp'] + (['-p'] if preserve else []) + [src, path])
	assert_saved(emulator, mnt, rec, path, 'title', 'Copied')


@pytest.mark.parametrize('opts', [[], ['--inplace'], ['-a']],
			 ids=['rsync', 'rsync-inplace', 'rsync-a'])
def test_rsync_over_record_patches_once(emulator, mnt, tmp_path, opts):
	rec, path = person(emulator, mnt)
	src = local_copy(tmp_path, rec['id'] + '.json',
			 with_field(read(path), 'title', 'Rsynced'))
	# A different size keeps rsync's quick check from skipping the file.
	editors.run(['rsync'] + opts + [src, path])
	assert_saved(emulator, mnt, rec, path, 'title', 'Rsynced')


def test_python_tempfile_replace_patches_once(emulator, mnt):
	rec, path = person(emulator, mnt)
	new = with_field(read(path), 'title', 'Replaced')
	with tempfile.NamedTemporaryFile('w', dir=mnt.p('people'),
					 delete=False) as f:
		f.write(new)
		f.flush()
		os.fsync(f.fileno())
	os.replace(f.name, path)
	assert_saved(emulator, mnt, rec, path, 'title', 'Replaced')
	assert not os.path.exists(f.name)


def test_tee_patches_once(emulator, mnt):
	rec, path = person(emulator, mnt)
	new = with_field(read(path), 'title', 'Teed')
	editors.run(['tee', path], input=new, stdin=None)
	assert_saved(emulator, mnt, rec, path, 'title', 'Teed')


def test_fsync_delivers_and_close_sends_nothing_more(emulator, mnt):
	rec, path = person(emulator, mnt)
	new = with_field(read(path), 'title', 'Synced')
	fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
	try:
		# Three short writes, as editors do; fsync returns once the
		# server took the save.
		third = len(new) // 3
		for chunk in (new[:third], new[third:2 * third],
			      new[2 * third:]):
			os.write(fd, chunk.encode())
		os.fsync(fd)
		assert log_of(emulator) == [('PATCH', '/people/' + rec['id'])]
		assert server(emulator, 'people', rec['id'])['title'] == \
			'Synced'
	finally:
		os.close(fd)
	assert_saved(emulator, mnt, rec, path, 'title', 'Synced')


def test_company_edit_patches_company(emulator, mnt, tmp_path):
	cid, path = _company(emulator, mnt)
	rec = server(emulator, 'companies', cid)
	editors.vim_substitute(path, '"name": "[^"]*"', '"name": "Renamed Co"')
	expect(emulator, [('PATCH', '/companies/' + cid, {'name'})])
	new = server(emulator, 'companies', cid)
	assert new['name'] == 'Renamed Co'
	assert {k: v for k, v in new.items() if k not in ('name',
							'updatedTime')} == \
		{k: v for k, v in rec.items() if k not in ('name',
							 'updatedTime')}
	assert read(path) == text(new)
	expect(emulator, [('PATCH', '/companies/' + cid, {'name'})])


def test_save_without_change_sends_nothing(emulator, mnt):
	rec, path = person(emulator, mnt)
	editors.run(['sh', '-c', 'cat > "$1"', 'sh', path], input=read(path),
		    stdin=None)
	editors.run(['touch', path])
	expect(emulator, [])
	assert read(path) == text(rec)


# ---------------------------------------------------------------- create

def new_person_body(tag):
	return {'firstName': 'New', 'lastName': 'Person' + tag,
		'email': 'new.person.%s@example.com' % tag}


def _by(emu, coll, key, value):
	found = [r for r in records(emu, coll).values() if r.get(key) == value]
	assert len(found) == 1, found
	return found[0]


def test_create_person_posts_once_and_name_keeps_resolving(emulator, mnt):
	os.listdir(mnt.p('people'))
	emulator.reset()
	body = new_person_body('c1')
	path = mnt.p('people', 'new.json')
	editors.run(['sh', '-c', 'cat > "$1"', 'sh', path],
		    input=json.dumps(body, indent=2) + '\n', stdin=None)
	new = ['/people/new']
	expect(emulator, [('POST', '/people')], misses=new)
	rec = _by(emulator, 'people', 'email', body['email'])
	assert read(mnt.p('people', rec['id'] + '.json')) == text(rec)
	assert read(path) == text(rec)
	assert rec['id'] + '.json' in os.listdir(mnt.p('people'))
	expect(emulator, [('POST', '/people')], misses=new)
	# A second save through the creating name updates, never duplicates.
	editors.run(['sh', '-c', 'cat > "$1"', 'sh', path],
		    input=with_field(text(rec), 'firstName', 'Renewed'),
		    stdin=None)
	expect(emulator, [('POST', '/people'),
			  ('PATCH', '/people/' + rec['id'], {'firstName'})],
	       misses=new)
	new = server(emulator, 'people', rec['id'])
	assert new['firstName'] == 'Renewed'
	assert read(path) == text(new)
	assert read(mnt.p('people', rec['id'] + '.json')) == text(new)
	assert len([r for r in records(emulator, 'people').values()
		    if r.get('email') == body['email']]) == 1


def test_create_person_by_email_name_upserts(emulator, mnt):
	emulator.reset()
	email = 'upsert.me@example.com'
	path = mnt.p('people', email + '.json')
	body = {'firstName': 'Up', 'lastName': 'Sert'}
	editors.run(['sh', '-c', 'cat > "$1"', 'sh', path],
		    input=json.dumps(body) + '\n', stdin=None)
	reqs = expect(emulator, [('PUT', '/people')],
		      misses=['/people/' + email])
	assert body_of(reqs[0]).get('email') == email
	rec = _by(emulator, 'people', 'email', email)
	assert rec['firstName'] == 'Up'
	assert read(path) == text(rec)
	assert read(mnt.p('people', rec['id'] + '.json')) == text(rec)


def test_create_company_posts(emulator, mnt):
	emulator.reset()
	body = {'name': 'Write Test Co', 'domain': 'writetest.example'}
	path = mnt.p('companies', 'new.json')
	editors.run(['sh', '-c', 'cat > "$1"', 'sh', path],
		    input=json.dumps(body) + '\n', stdin=None)
	expect(emulator, [('POST', '/companies')], misses=['/companies/new'])
	rec = _by(emulator, 'companies', 'domain', body['domain'])
	assert read(mnt.p('companies', rec['id'] + '.json')) == text(rec)
	assert read(path) == text(rec)
	assert rec['id'] + '.json' in os.listdir(mnt.p('companies'))


def test_create_interaction_posts_and_reads_back(emulator, mnt):
	pid = people(emulator, 1)[0]['id']
	os.listdir(mnt.p('interactions'))
	emulator.reset()
	body = {'type': 'MEMO', 'direction': 'INTERNAL',
		'title': 'Written through klipyfs', 'mainContact': pid}
	path = mnt.p('interactions', 'note.json')
	editors.run(['sh', '-c', 'cat > "$1"', 'sh', path],
		    input=json.dumps(body) + '\n', stdin=None)
	reqs = drop_misses(settle(emulator, 1), ['/interactions/note'])
	rec = _by(emulator, 'interactions', 'title', body['title'])
	got = [(r['method'], api_path(r['path'])) for r in reqs]
	# The answer holds only the id: the daemon may fetch the record once.
	assert got[0] == ('POST', '/interactions'), _fmt(reqs)
	assert got[1:] in ([], [('GET', '/interactions/' + rec['id'])]), \
		_fmt(reqs)
	assert read(mnt.p('interactions', rec['id'] + '.json')) == text(rec)
	assert read(path) == text(rec)
	assert [(r['method'], api_path(r['path'])) for r in drop_misses(
		emulator.requests(), ['/interactions/note'])] == got


def test_touch_new_file_is_a_local_draft(emulator, mnt):
	os.listdir(mnt.p('people'))
	emulator.reset()
	n = len(records(emulator, 'people'))
	path = mnt.p('people', 'draft.json')
	editors.run(['touch', path])
	assert os.stat(path).st_size == 0
	assert read(path) == ''
	expect(emulator, [], misses=['/people/draft'])
	os.unlink(path)
	assert not os.path.exists(path)
	expect(emulator, [], misses=['/people/draft'])
	assert len(records(emulator, 'people')) == n


# ---------------------------------------------------------------- delete

def test_rm_person_deletes(emulator, mnt):
	rec, path = person(emulator, mnt)
	editors.run(['rm', path])
	expect(emulator, [('DELETE', '/people/' + rec['id'])])
	assert server(emulator, 'people', rec['id']) is None
	assert not os.path.exists(path)


def _company(emu, m):
	cid = next(iter(records(emu, 'companies')))
	path = m.p('companies', cid + '.json')
	assert read(path) == text(server(emu, 'companies', cid))
	emu.reset()
	return cid, path


def _interaction(emu, m):
	iid = next(iter(records(emu, 'interactions')))
	path = m.p('interactions', iid + '.json')
	assert read(path) == text(server(emu, 'interactions', iid))
	emu.reset()
	return iid, path


def test_rm_company_deletes(emulator, mnt):
	cid, path = _company(emulator, mnt)
	editors.run(['rm', path])
	expect(emulator, [('DELETE', '/companies/' + cid)])
	assert server(emulator, 'companies', cid) is None
	assert not os.path.exists(path)


def test_interactions_cannot_be_removed_or_changed(emulator, mnt):
	iid, path = _interaction(emulator, mnt)
	rec = server(emulator, 'interactions', iid)
	assert errno_of(os.unlink, path) == errno.EPERM
	assert errno_of(os.open, path, os.O_WRONLY) == errno.EPERM
	assert errno_of(os.open, path, os.O_WRONLY | os.O_TRUNC) == \
		errno.EPERM
	assert editors.run(['rm', '-f', path], check=False).returncode != 0
	expect(emulator, [])
	assert server(emulator, 'interactions', iid) == rec
	assert read(path) == text(rec)


# ---------------------------------------------------------------- metadata

def test_chmod_chown_touch_are_accepted_no_ops(emulator, mnt):
	rec, path = person(emulator, mnt)
	st = os.stat(path)
	editors.run(['chmod', '600', path])
	editors.run(['chown', '%d:%d' % (os.getuid(), os.getgid()), path])
	editors.run(['touch', path])
	editors.run(['touch', '-d', '2001-01-01', path])
	os.utime(path, None)
	expect(emulator, [])
	st2 = os.stat(path)
	assert st2.st_mode == st.st_mode
	assert int(st2.st_mtime) == int(st.st_mtime)
	assert read(path) == text(rec)
	assert server(emulator, 'people', rec['id']) == rec


def test_mkdir_and_links_are_refused(emulator, mnt):
	rec, path = person(emulator, mnt)
	other = mnt.p('people', 'linked.json')
	assert errno_of(os.mkdir, mnt.p('people', 'sub')) == errno.EPERM
	assert errno_of(os.mkdir, mnt.p('people', 'sub.json')) == errno.EPERM
	assert errno_of(os.link, path, other) == errno.EPERM
	assert errno_of(os.symlink, path, other) == errno.EPERM
	assert errno_of(os.symlink, 'x', mnt.p('people', 'y.json')) == \
		errno.EPERM
	for argv in (['mkdir', mnt.p('people', 'dir')], ['ln', path, other],
		     ['ln', '-s', path, other]):
		assert editors.run(argv, check=False).returncode != 0
	expect(emulator, [], misses=['/people/sub', '/people/linked',
				     '/people/y', '/people/dir'])
	assert not os.path.lexists(other)


# ---------------------------------------------------------------- refusals

def _rejected_path(m, rid):
	return m.p('.klipy', 'rejected', 'people', rid + '.json')


@pytest.mark.parametrize('how', ['invalid-json', 'changed-id'])
def test_bad_text_is_refused_locally_and_kept(emulator, mnt, how):
	rec, path = person(emulator, mnt)
	if how == 'invalid-json':
		bad = read(path).replace('"', '', 1)
	else:
		bad = with_field(read(path), 'id', 'somebodyelse')
	assert write_file(path, bad) == errno.EINVAL
	expect(emulator, [])
	assert server(emulator, 'people', rec['id']) == rec
	rej = _rejected_path(mnt, rec['id'])
	assert read(rej) == bad
	assert listed(status_files(mnt, 'rejected'), 'people',
		      rec['id'] + '.json')
	os.unlink(rej)
	assert not os.path.exists(rej)
	assert not listed(status_files(mnt, 'rejected'), 'people',
			  rec['id'] + '.json')
	assert read(path) == text(rec)
	expect(emulator, [])


@pytest.mark.parametrize('how', ['wrong-type', 'unknown-field'])
def test_server_validation_error_fails_close(emulator, mnt, how):
	rec, path = person(emulator, mnt)
	if how == 'wrong-type':
		key = 'tags'
		bad = with_field(read(path), 'tags', 'notalist')
	else:
		key = 'favouriteColour'
		bad = read(path).replace('{\n', '{\n  "favouriteColour": '
					 '"blue",\n', 1)
	assert write_file(path, bad) == errno.EINVAL
	reqs = expect(emulator, [('PATCH', '/people/' + rec['id'], {key})])
	assert reqs[0].get('status') == 400
	assert server(emulator, 'people', rec['id']) == rec
	assert read(_rejected_path(mnt, rec['id'])) == bad
	lines = [ln for ln in mnt.log().splitlines()
		 if 'VALIDATION_ERROR' in ln and rec['id'] + '.json' in ln]
	assert lines, mnt.log()[-3000:]


# ---------------------------------------------------------------- network

def _wait_delivered(emu, rid, key, value, timeout=DELIVERY_TIMEOUT):
	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		r = server(emu, 'people', rid)
		if r and r.get(key) == value:
			return r
		time.sleep(0.2)
	raise AssertionError('write of %s never delivered: %s' %
			     (rid, _fmt(emu.requests())))


def _patches_ok(emu, rid):
	"""Only PATCHes of @rid were sent (and mount-time authentication)."""
	reqs = settle(emu, 1, quiet=1.0)
	sent = {(r['method'], api_path(r['path'])) for r in reqs}
	assert sent <= {('PATCH', '/people/' + rid),
			('GET', '/authenticate')}, _fmt(reqs)
	return [r for r in reqs if r['method'] == 'PATCH' and
		200 <= int(r.get('status') or 0) < 300]


def test_save_during_outage_is_journaled_and_delivered(emulator, mnt):
	rec, path = person(emulator, mnt)
	new = with_field(read(path), 'title', 'Journaled')
	emulator.config(fail_rate=1.0)
	try:
		assert write_file(path, new) is None
		assert read(path) == new
		assert listed(status_files(mnt, 'pending'), 'people',
			      rec['id'] + '.json')
		assert server(emulator, 'people', rec['id']) == rec
	finally:
		emulator.config(fail_rate=0)
	got = _wait_delivered(emulator, rec['id'], 'title', 'Journaled')
	ok = _patches_ok(emulator, rec['id'])
	assert len(ok) == 1, _fmt(emulator.requests())
	assert body_keys(ok[0]) == {'title'}
	assert got['firstName'] == rec['firstName']
	deadline = time.monotonic() + 5
	while status_files(mnt, 'pending') and time.monotonic() < deadline:
		time.sleep(0.1)
	assert status_files(mnt, 'pending') == []
	assert read(path) == text(server(emulator, 'people', rec['id']))


def test_pending_save_survives_kill_9_and_remount(emulator, mount_fs,
						   tmp_path):
	cache = str(tmp_path / 'cache')
	m = mount_fs(emulator, cache_dir=cache)
	rec, path = person(emulator, m)
	new = with_field(read(path), 'title', 'Survivor')
	emulator.config(fail_rate=1.0)
	try:
		assert write_file(path, new) is None
		m.kill9()
		assert server(emulator, 'people', rec['id']) == rec
	finally:
		emulator.config(fail_rate=0)
	m2 = mount_fs(emulator, cache_dir=cache)
	_wait_delivered(emulator, rec['id'], 'title', 'Survivor')
	ok = _patches_ok(emulator, rec['id'])
	assert len(ok) == 1, _fmt(emulator.requests())
	assert body_keys(ok[0]) == {'title'}
	assert read(m2.p('people', rec['id'] + '.json')) == \
		text(server(emulator, 'people', rec['id']))


# ---------------------------------------------------------------- conflicts

def _edit_after_server_change(emulator, mount_fs, server_change):
	m = mount_fs(emulator, ttl=1)
	rec, path = person(emulator, m)
	mine = with_field(read(path), 'title', 'Mine')
	status, _ = api_call(emulator, 'PATCH', '/people/' + rec['id'],
			     server_change)
	assert status == 200
	emulator.reset()
	time.sleep(1.5)
	return m, rec, path, mine


def test_concurrent_change_of_other_field_survives(emulator, mount_fs):
	m, rec, path, mine = _edit_after_server_change(
		emulator, mount_fs, {'lastName': 'Elsewhere'})
	assert write_file(path, mine) is None
	reqs = settle(emulator, 1)
	writes = [r for r in reqs if r['method'] != 'GET']
	assert [(r['method'], api_path(r['path'])) for r in writes] == \
		[('PATCH', '/people/' + rec['id'])], _fmt(reqs)
	assert body_keys(writes[0]) == {'title'}
	assert all(api_path(r['path']) == '/people/' + rec['id']
		   for r in reqs), _fmt(reqs)
	now = server(emulator, 'people', rec['id'])
	assert now['title'] == 'Mine'
	assert now['lastName'] == 'Elsewhere'
	assert read(path) == text(now)


def test_concurrent_change_of_same_field_is_estale(emulator, mount_fs):
	m, rec, path, mine = _edit_after_server_change(
		emulator, mount_fs, {'title': 'Theirs'})
	assert write_file(path, mine) == errno.ESTALE
	reqs = settle(emulator)
	assert all(r['method'] == 'GET' and
		   api_path(r['path']) == '/people/' + rec['id']
		   for r in reqs), _fmt(reqs)
	assert server(emulator, 'people', rec['id'])['title'] == 'Theirs'
	assert read(_rejected_path(m, rec['id'])) == mine


# ---------------------------------------------------------------- read-only

def test_read_only_mount_refuses_every_change(emulator, mount_fs):
	m = mount_fs(emulator, '-o', 'ro')
	rec, path = person(emulator, m)
	new = with_field(read(path), 'title', 'Nope')
	assert errno_of(write_file, path, new) == errno.EROFS
	assert errno_of(os.open, m.p('people', 'new.json'),
			os.O_WRONLY | os.O_CREAT, 0o644) == errno.EROFS
	assert errno_of(os.unlink, path) == errno.EROFS
	assert errno_of(os.rename, path, path + '~') == errno.EROFS
	assert errno_of(os.mkdir, m.p('people', 'd')) == errno.EROFS
	assert errno_of(os.chmod, path, 0o600) == errno.EROFS
	assert editors.run(['sed', '-i', 's/a/b/', path],
			   check=False).returncode != 0
	expect(emulator, [], misses=['/people/new', '/people/d'])
	assert read(path) == text(rec)
	assert server(emulator, 'people', rec['id']) == rec
