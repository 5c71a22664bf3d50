"""Write-side cases of issue 4 that test_write.py and test_write_more.py
leave open: removed fields and nested values in a PATCH, refused saves
through rename, drafts, what the log says, the file after a refused append,
the other read-only fields, cp -a, and a 429 past the retry budget.

As in test_write.py, every test checks the file through the mount, the
emulator's record and its exact request log.
"""

import errno
import http.client
import http.server
import json
import os
import subprocess
import tempfile
import threading
import time

import pytest

import editors
from test_write import (_by, _fmt, _wait_delivered, api_path, body_keys,
			body_of, expect, listed, people, person,
			read, records, server, settle, status_files, text,
			with_field, write_file)
from test_write_more import assert_attrs_match, rejected_path, wait_for


# ---------------------------------------------------------------- helpers

def klipyfs_lines(m, *words):
	"""The daemon's own log lines (not libfuse's -d trace) holding every
	one of @words."""
	return [ln for ln in m.log().splitlines()
		if ln.startswith('klipyfs:') and all(w in ln for w in words)]


def shell(script, *args, **kw):
	"""sh -c @script with @args as $1... (keywords go to editors.run)."""
	return editors.run(['sh', '-c', script, 'sh'] + list(args), **kw)


def assert_untouched(emu, m, rec, path):
	"""The server still has @rec and the record file still shows it."""
	assert server(emu, 'people', rec['id']) == rec
	assert read(path) == text(rec)
	assert os.stat(path).st_size == len(text(rec).encode())
	assert json.loads(subprocess.run(['cat', path], capture_output=True,
					 check=True).stdout) == rec


def assert_refused_locally(emu, m, rec, path, bad, *why):
	"""
	A save of @bad over @rec was refused without asking the server: the
	record is as it was, the text is in .klipy/rejected/ and listed in
	.klipy/status, and one log line names the file and the reason (@why).
	"""
	name = rec['id'] + '.json'
	expect(emu, [])
	assert_untouched(emu, m, rec, path)
	assert read(rejected_path(m, name)) == bad
	assert listed(status_files(m, 'rejected'), 'people', name)
	assert status_files(m, 'pending') == []
	lines = klipyfs_lines(m, 'people/' + name)
	assert len(lines) == 1, m.log()[-3000:]
	for w in why:
		assert w in lines[0], lines[0]


def posted_once(emu, body, n, misses):
	"""Exactly one POST /people of @body went out, the server has one
	more person than @n, with @body's email: return that record."""
	reqs = expect(emu, [('POST', '/people', set(body))], misses=misses)
	assert body_of(reqs[0]) == body
	rec = _by(emu, 'people', 'email', body['email'])
	assert len(records(emu, 'people')) == n + 1
	return rec


def person_with(emu, m, pred, skip=0):
	"""A person for whom @pred(record) holds, primed as person() does."""
	for i, r in enumerate(people(emu, 60)):
		if pred(r):
			if skip:
				skip -= 1
				continue
			return person(emu, m, i)
	pytest.skip('no person in the data set fits')


# ------------------------------------------------- null and nested values

def test_removed_field_is_null_and_a_changed_array_is_sent_whole(
		emulator, mnt):
	rec, path = person_with(emulator, mnt, lambda r: isinstance(
		r.get('title'), str) and len(r.get('tags') or []) >= 2)
	edited = json.loads(read(path))
	del edited['title']
	tags = list(rec['tags'][:-1]) + ['changed-tag']
	edited['tags'] = tags
	shell('cat > "$1"', path, input=text(edited), stdin=None)
	reqs = expect(emulator, [('PATCH', '/people/' + rec['id'],
				  {'title', 'tags'})])
	assert body_of(reqs[0]) == {'title': None, 'tags': tags}
	now = server(emulator, 'people', rec['id'])
	assert now['title'] is None
	assert now['tags'] == tags
	assert {k: v for k, v in now.items()
		if k not in ('title', 'tags', 'updatedTime')} == \
		{k: v for k, v in rec.items()
		 if k not in ('title', 'tags', 'updatedTime')}
	assert read(path) == text(now)
	assert_attrs_match(path, now)
	expect(emulator, [('PATCH', '/people/' + rec['id'],
			   {'title', 'tags'})])


def test_changed_nested_object_is_sent_whole(make_emulator, mount_fs,
					     tmp_path):
	"""A record may carry fields this program does not know, objects
	too.  A change deep inside one sends the whole object (the emulator
	then refuses the unknown field, which is what it does to any client;
	the request's body is the witness)."""
	address = {'street': 'Main St 1', 'city': 'Springfield',
		   'geo': {'lat': 1.5, 'lon': 2.5}}
	data = tmp_path / 'data.json'
	data.write_text(json.dumps({'people': [
		{'id': 'nested01', 'firstName': 'Nes', 'lastName': 'Ted',
		 'email': 'nes.ted@example.com', 'tags': ['a', 'b'],
		 'address': address}], 'companies': [], 'interactions': []}))
	emu = make_emulator('--data', str(data))
	m = mount_fs(emu)
	rec = server(emu, 'people', 'nested01')
	assert rec['address'] == address
	path = m.p('people', 'nested01.json')
	assert read(path) == text(rec)
	emu.reset()
	edited = json.loads(read(path))
	edited['address']['geo']['lat'] = 9.25
	assert write_file(path, text(edited)) == errno.EINVAL
	reqs = expect(emu, [('PATCH', '/people/nested01', {'address'})])
	assert reqs[0]['status'] == 400
	assert body_of(reqs[0]) == {'address': edited['address']}
	assert server(emu, 'people', 'nested01') == rec
	assert read(path) == text(rec)
	assert read(rejected_path(m, 'nested01.json')) == text(edited)


# ------------------------------------------------- refused saves by rename

def _bad_text(rec, how):
	"""(sed script, the text it leaves) for a refused save."""
	t = text(rec)
	if how == 'invalid-json':
		old, new = '"firstName": ', '"firstName" '
	else:
		old, new = '"id": "%s"' % rec['id'], '"id": "zz%s"' % rec['id']
	assert t.count(old) == 1
	return 's/%s/%s/' % (old, new), t.replace(old, new)


@pytest.mark.parametrize('how', ['invalid-json', 'changed-id'])
@pytest.mark.parametrize('tool', ['sed-i', 'os-replace'])
def test_refused_save_by_rename_fails_the_rename(emulator, mnt, tool, how):
	os.listdir(mnt.p('people'))	# listed below: cached, so free
	rec, path = person(emulator, mnt)
	script, bad = _bad_text(rec, how)
	if tool == 'sed-i':
		r = editors.run(['sed', '-i', script, path], check=False)
		assert r.returncode != 0
		assert 'cannot rename' in r.stderr, r.stderr
		assert os.strerror(errno.EINVAL) in r.stderr, r.stderr
		# sed removes its temporary file when the rename fails.
		assert not [n for n in os.listdir(mnt.p('people'))
			    if n.startswith('sed')]
	else:
		with tempfile.NamedTemporaryFile('w', dir=mnt.p('people'),
						 delete=False) as f:
			f.write(bad)
		with pytest.raises(OSError) as e:
			os.replace(f.name, path)
		assert e.value.errno == errno.EINVAL
		# A failed rename changes nothing: the temporary file is
		# still there for the caller to clean up.
		assert read(f.name) == bad
		os.unlink(f.name)
		assert not os.path.lexists(f.name)
	why = ('JSON',) if how == 'invalid-json' else ("'id'",)
	assert_refused_locally(emulator, mnt, rec, path, bad, *why)
	assert rec['id'] + '.json' in os.listdir(mnt.p('people'))
	expect(emulator, [])


# ---------------------------------------------------------------- drafts

def test_unparsable_new_file_is_a_draft_until_saved_valid(emulator, mnt):
	os.listdir(mnt.p('people'))	# listed below: cached, so free
	emulator.reset()
	n = len(records(emulator, 'people'))
	path = mnt.p('people', 'new.json')
	misses = ['/people/new']
	shell('echo "{" > "$1"', path)
	expect(emulator, [], misses=misses)
	assert read(path) == '{\n'
	assert os.stat(path).st_size == 2
	assert 'new.json' in os.listdir(mnt.p('people'))
	assert status_files(mnt, 'pending') == []
	assert status_files(mnt, 'rejected') == []
	# Still no object: still a draft, and close says nothing is wrong.
	assert write_file(path, '{"firstName": ') is None
	assert read(path) == '{"firstName": '
	expect(emulator, [], misses=misses)
	assert len(records(emulator, 'people')) == n

	body = {'firstName': 'Draft', 'lastName': 'Done',
		'email': 'draft.done@example.com'}
	assert write_file(path, json.dumps(body, indent=2) + '\n') is None
	rec = posted_once(emulator, body, n, misses)
	assert read(path) == text(rec)
	assert read(mnt.p('people', rec['id'] + '.json')) == text(rec)
	names = os.listdir(mnt.p('people'))
	assert rec['id'] + '.json' in names
	assert 'new.json' not in names
	expect(emulator, [('POST', '/people', set(body))], misses=misses)


# ---------------------------------------------------------------- the log

def test_create_logs_the_new_id_without_debug(emulator, mount_fs):
	m = mount_fs(emulator, debug=False)
	body = {'firstName': 'Logged', 'lastName': 'Create',
		'email': 'logged.create@example.com'}
	path = m.p('people', 'logged create.json')
	assert write_file(path, json.dumps(body),
			  os.O_WRONLY | os.O_CREAT | os.O_TRUNC) is None
	rec = _by(emulator, 'people', 'email', body['email'])
	lines = klipyfs_lines(m, rec['id'])
	assert len(lines) == 1, m.log()
	assert 'people/' + rec['id'] + '.json' in lines[0]
	assert 'logged create.json' in lines[0]


@pytest.mark.parametrize('how', ['invalid-json', 'createdBy'])
def test_local_refusal_logs_one_line_without_debug(emulator, mount_fs,
						   how):
	m = mount_fs(emulator, debug=False)
	rec, path = person(emulator, m)
	if how == 'invalid-json':
		bad, why = read(path)[:-3], 'JSON'
	else:
		bad, why = with_field(read(path), 'createdBy', 'me'), \
			'createdBy'
	assert write_file(path, bad) == errno.EINVAL
	assert_refused_locally(emulator, m, rec, path, bad, why)


# ------------------------------------------------- appends, read-only fields

def test_refused_append_leaves_the_server_record_showing(emulator, mnt):
	rec, path = person(emulator, mnt)
	before = read(path)
	extra = '{"title": "Appended"}\n'
	# sh does not check the close of its redirection: its status says
	# nothing.
	shell('printf "%s" "$2" >> "$1"', path, extra, check=False)
	assert_refused_locally(emulator, mnt, rec, path, before + extra,
			       'JSON')
	# Appended to again: the base is the record, not the refused text.
	assert write_file(path, extra, os.O_WRONLY | os.O_APPEND) == \
		errno.EINVAL
	expect(emulator, [])
	assert_untouched(emulator, mnt, rec, path)
	assert read(rejected_path(mnt, rec['id'] + '.json')) == before + extra
	# A good save afterwards sends only its own change.
	assert write_file(path, with_field(read(path), 'title',
					   'After Append')) is None
	expect(emulator, [('PATCH', '/people/' + rec['id'], {'title'})])
	now = server(emulator, 'people', rec['id'])
	assert now['title'] == 'After Append'
	assert read(path) == text(now)


@pytest.mark.parametrize('field,value', [
	('createdBy', 'somebody@else.example'),
	('creationTime', '2001-02-03T04:05:06.789Z'),
	# A time no version ever had (later than every one): not a version
	# an editor could hold, so a change of a read-only field.
	('updatedTime', '2099-01-01T00:00:00.000Z'),
], ids=['createdBy', 'creationTime', 'updatedTime-unknown'])
def test_changed_read_only_field_is_refused_locally(emulator, mnt, field,
						    value):
	rec, path = person(emulator, mnt)
	bad = with_field(read(path), field, value)
	assert write_file(path, bad) == errno.EINVAL
	assert_refused_locally(emulator, mnt, rec, path, bad, field)
	# With a real change beside it, still nothing goes out.
	worse = with_field(bad, 'title', 'Sneaked In')
	assert write_file(path, worse) == errno.EINVAL
	expect(emulator, [])
	assert_untouched(emulator, mnt, rec, path)
	assert read(rejected_path(mnt, rec['id'] + '.json')) == worse


# ---------------------------------------------------------------- cp -a

def test_cp_a_onto_a_record_patches_once(emulator, mnt, tmp_path):
	rec, path = person(emulator, mnt)
	src = tmp_path / 'local' / (rec['id'] + '.json')
	src.parent.mkdir()
	src.write_text(with_field(read(path), 'title', 'Copied -a'))
	os.utime(src, (1e9, 1e9))
	editors.run(['cp', '-a', str(src), path])
	expect(emulator, [('PATCH', '/people/' + rec['id'], {'title'})])
	now = server(emulator, 'people', rec['id'])
	assert now['title'] == 'Copied -a'
	assert {k: v for k, v in now.items()
		if k not in ('title', 'updatedTime')} == \
		{k: v for k, v in rec.items() if k not in ('title',
							   'updatedTime')}
	# cp -a's chmod and utimensat are no-ops: the record's mode and time.
	assert_attrs_match(path, now)
	assert os.stat(path).st_mode & 0o7777 == 0o644
	expect(emulator, [('PATCH', '/people/' + rec['id'], {'title'})])


def test_cp_a_of_a_new_file_creates_once(emulator, mnt, tmp_path):
	os.listdir(mnt.p('people'))	# listed below: cached, so free
	emulator.reset()
	n = len(records(emulator, 'people'))
	body = {'firstName': 'Copied', 'lastName': 'In',
		'email': 'copied.in@example.com'}
	src = tmp_path / 'local' / 'newcontact.json'
	src.parent.mkdir()
	src.write_text(json.dumps(body, indent=2) + '\n')
	os.chmod(src, 0o600)
	editors.run(['cp', '-a', str(src), mnt.p('people')])
	misses = ['/people/newcontact']
	rec = posted_once(emulator, body, n, misses)
	assert read(mnt.p('people', rec['id'] + '.json')) == text(rec)
	assert read(mnt.p('people', 'newcontact.json')) == text(rec)
	assert rec['id'] + '.json' in os.listdir(mnt.p('people'))
	# cp -a's chmod to 0600 and its times are no-ops on a record.
	for name in (rec['id'] + '.json', 'newcontact.json'):
		assert_attrs_match(mnt.p('people', name), rec)
		assert os.stat(mnt.p('people', name)).st_mode & 0o7777 == 0o644
	expect(emulator, [('POST', '/people', set(body))], misses=misses)


# ---------------------------------------------------------------- 429

class RateLimitingProxy(http.server.ThreadingHTTPServer):
	"""
	A loopback HTTP proxy in front of the emulator that answers every
	/api/v1 request with a 429 while .refuse is set (the emulator's
	--fail-status takes only 5xx).  .log holds (method, path, status) of
	the 429s it sent; what it forwards shows in the emulator's log.
	"""

	daemon_threads = True

	def __init__(self, upstream):
		super().__init__(('127.0.0.1', 0), _ProxyHandler)
		self.upstream = upstream
		self.refuse = threading.Event()
		self.log = []
		self.lock = threading.Lock()
		self.thread = threading.Thread(target=self.serve_forever,
					       daemon=True)
		self.thread.start()

	@property
	def url(self):
		return 'http://127.0.0.1:%d/api/v1' % self.server_port

	def refused(self):
		with self.lock:
			return list(self.log)

	def stop(self):
		self.shutdown()
		self.server_close()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
	protocol_version = 'HTTP/1.1'

	def _relay(self):
		n = int(self.headers.get('Content-Length') or 0)
		body = self.rfile.read(n) if n else None
		if self.server.refuse.is_set() and \
				self.path.startswith('/api/v1'):
			with self.server.lock:
				self.server.log.append((self.command,
							api_path(self.path),
							429))
			self._answer(429, {'Retry-After': '0'}, json.dumps({
				'object': 'error',
				'error': {'code': 'RATE_LIMITED',
					  'message': 'Too many requests'}}
			).encode())
			return
		up = http.client.HTTPConnection(self.server.upstream.root[
			len('http://'):], timeout=30)
		hdrs = {k: v for k, v in self.headers.items()
			if k.lower() not in ('host', 'connection',
					     'content-length', 'expect')}
		up.request(self.command, self.path, body=body, headers=hdrs)
		r = up.getresponse()
		data = r.read()
		keep = {k: v for k, v in r.getheaders()
			if k.lower() not in ('connection', 'content-length',
					     'transfer-encoding', 'date',
					     'server')}
		up.close()
		self._answer(r.status, keep, data)

	def _answer(self, status, headers, data):
		self.send_response(status)
		for k, v in headers.items():
			self.send_header(k, v)
		self.send_header('Content-Type', 'application/json')
		self.send_header('Content-Length', str(len(data)))
		self.end_headers()
		self.wfile.write(data)

	do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

	def log_message(self, *args):
		pass


@pytest.fixture
def proxy(emulator):
	p = RateLimitingProxy(emulator)
	yield p
	p.stop()


def test_429_past_the_retry_budget_queues_and_delivers(emulator, proxy,
						       mount_fs):
	m = mount_fs(proxy.url)
	m.emu = emulator
	rec, path = person(emulator, m)
	name = rec['id'] + '.json'
	new = with_field(read(path), 'title', 'Rate Limited')
	proxy.refuse.set()
	try:
		t0 = time.monotonic()
		assert write_file(path, new) is None
		took = time.monotonic() - t0
		assert read(path) == new
		pend = m.status()['pending']
		assert [p['file'] for p in pend] == ['people/' + name], pend
		assert pend[0]['method'] == 'PATCH'
		assert m.status()['api']['rate_limited'] > 0
		assert server(emulator, 'people', rec['id']) == rec
		assert emulator.requests() == []
		refused = proxy.refused()
		assert set(refused) == {('PATCH', '/people/' + rec['id'],
					 429)}, refused
		# It retried before giving up, and did not wait long.
		assert len(refused) > 1, refused
		assert took < 10, took
	finally:
		proxy.refuse.clear()
	now = _wait_delivered(emulator, rec['id'], 'title', 'Rate Limited')
	wait_for(lambda: status_files(m, 'pending') == [], 5,
		 'the journal to empty')
	reqs = settle(emulator, 1, quiet=1.0)
	assert [(r['method'], api_path(r['path'])) for r in reqs] == \
		[('PATCH', '/people/' + rec['id'])], _fmt(reqs)
	assert body_keys(reqs[0]) == {'title'}
	assert {k: v for k, v in now.items()
		if k not in ('title', 'updatedTime')} == \
		{k: v for k, v in rec.items() if k not in ('title',
							   'updatedTime')}
	assert status_files(m, 'rejected') == []
	assert read(path) == text(server(emulator, 'people', rec['id']))
	assert len(emulator.requests()) == 1
