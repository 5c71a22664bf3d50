"""More of the write side: what tests/test_write.py does not pin down yet.

Scratch files as local files, a scratch file renamed onto a record while
still open, a record renamed to a scratch name, the attributes after a save,
queued saves that the server later refuses, unmount with a queued save, a
batch with one bad file, a create that collides, offline saves, and the
request counts of .klipy/status.  As in test_write.py, every test checks the
file view through the mount, the emulator's records and its exact request
log.
"""

import errno
import json
import os
import re
import signal
import subprocess
import tempfile
import time

import pytest

from mountutil import Traffic, iso_to_epoch
from test_write import (DELIVERY_TIMEOUT, _fmt, _patches_ok,
			_wait_delivered, api_call, api_path, body_keys, body_of,
			expect, listed, people, person, read, records, server,
			settle, status_files, text, with_field, write_file)


# ---------------------------------------------------------------- helpers

def read_bytes(path):
	with open(path, 'rb') as f:
		return f.read()


def rejected_path(m, name, coll='people'):
	return m.p('.klipy', 'rejected', coll, name)


def ls_a(path):
	"""`ls -a` of @path, one name a line."""
	r = subprocess.run(['ls', '-a', '-1', path], capture_output=True,
			   text=True, check=True)
	return r.stdout.splitlines()


def wait_for(cond, timeout, what):
	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		if cond():
			return
		time.sleep(0.2)
	raise AssertionError('timed out waiting for %s' % what)


def assert_attrs_match(path, rec):
	"""stat of @path agrees with its text and the record's updatedTime."""
	data = read_bytes(path)
	st = os.stat(path)
	assert data == text(rec).encode()
	assert st.st_size == len(data)
	assert int(st.st_mtime) == int(iso_to_epoch(rec['updatedTime'])), \
		(st.st_mtime, rec['updatedTime'])


# ---------------------------------------------------------------- scratch

def test_scratch_files_are_local_and_vanish_at_unmount(emulator, mount_fs,
							tmp_path):
	cache = str(tmp_path / 'cache')
	m = mount_fs(emulator, cache_dir=cache)
	d = m.p('people')
	os.listdir(d)			# the listing is cached: ls -a is free
	rec, path = person(emulator, m)
	x = rec['id'] + '.json'
	n_people = len(records(emulator, 'people'))

	# vim's swap file: sparse random writes, fsync, truncate up and down.
	swp = os.path.join(d, '.%s.swp' % x)
	fd = os.open(swp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
	try:
		assert os.pwrite(fd, b'tail', 8192) == 4
		assert os.pwrite(fd, b'b0VIM 9.0', 0) == 9
		assert os.pwrite(fd, b'mid', 4000) == 3
		os.fsync(fd)
		assert os.fstat(fd).st_size == 8196
		want = bytearray(8196)
		want[0:9] = b'b0VIM 9.0'
		want[4000:4003] = b'mid'
		want[8192:8196] = b'tail'
		assert os.pread(fd, 10000, 0) == bytes(want)
		assert os.pread(fd, 5, 3998) == b'\0\0mid'
		os.ftruncate(fd, 12000)
		assert os.fstat(fd).st_size == 12000
		assert os.pread(fd, 4000, 8190) == b'\0\0tail' + bytes(3804)
		os.ftruncate(fd, 4002)
		assert os.pread(fd, 100, 3990) == bytes(10) + b'mi'
		os.fsync(fd)
	finally:
		os.close(fd)
	assert os.stat(swp).st_size == 4002
	swp_bytes = bytes(want[:4002])
	assert read_bytes(swp) == swp_bytes

	# vim's probe file 4913: created, closed, removed.
	probe = os.path.join(d, '4913')
	fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
	os.close(fd)
	assert os.stat(probe).st_size == 0
	os.unlink(probe)
	assert not os.path.lexists(probe)
	# ... and once more, kept this time.
	with open(probe, 'wb') as f:
		f.write(b'4913')

	# A backup holding the record's text, truncated by path.
	backup = os.path.join(d, x + '~')
	with open(backup, 'wb') as f:
		f.write(text(rec).encode())
	os.truncate(backup, 10)
	assert read_bytes(backup) == text(rec).encode()[:10]
	os.truncate(backup, 20)
	assert read_bytes(backup) == text(rec).encode()[:10] + bytes(10)

	# emacs's auto-save file, renamed between scratch names and back,
	# once onto an existing scratch file (which it replaces).
	auto = os.path.join(d, '#%s#' % x)
	with open(auto, 'wb') as f:
		f.write(b'{"autosaved": true}\n')
	other = os.path.join(d, '.%s.Ab12Cd' % x)
	os.rename(auto, other)
	assert not os.path.lexists(auto)
	assert read_bytes(other) == b'{"autosaved": true}\n'
	with open(auto, 'wb') as f:
		f.write(b'older')
	os.rename(other, auto)
	assert not os.path.lexists(other)
	assert read_bytes(auto) == b'{"autosaved": true}\n'

	# A plain text file, appended to.
	notes = os.path.join(d, 'notes.txt')
	with open(notes, 'w') as f:
		f.write('line 1\n')
	with open(notes, 'a') as f:
		f.write('line 2\n')
	assert read_bytes(notes) == b'line 1\nline 2\n'

	# emacs's lock: a dangling symlink whose target is the lock owner.
	lock = os.path.join(d, '.#' + x)
	target = 'user@host.1234:1700000000'
	os.symlink(target, lock)
	assert os.readlink(lock) == target
	assert os.path.islink(lock)
	assert not os.path.exists(lock)		# dangling, as emacs leaves it

	scratch = {'.%s.swp' % x: 4002, '4913': 4, x + '~': 20,
		   '#%s#' % x: 20, 'notes.txt': 14}
	names = ls_a(d)
	for name, size in scratch.items():
		assert name in names, name
		assert os.lstat(os.path.join(d, name)).st_size == size, name
	assert '.#' + x in names
	assert os.lstat(lock).st_size == len(target)
	assert '.%s.Ab12Cd' % x not in names
	assert x in names
	assert sorted(n for n in names if n not in ('.', '..')) == \
		sorted(os.listdir(d))

	# The record itself is untouched, and nothing of this was sent.
	assert read(path) == text(rec)
	expect(emulator, [])
	assert server(emulator, 'people', rec['id']) == rec
	assert len(records(emulator, 'people')) == n_people

	os.unlink(lock)
	assert not os.path.lexists(lock)
	os.symlink(target, lock)
	m.umount()
	emulator.reset()
	m2 = mount_fs(emulator, cache_dir=cache)
	emulator.reset()
	d2 = m2.p('people')
	for name in list(scratch) + ['.#' + x]:
		assert not os.path.lexists(os.path.join(d2, name)), name
	names = ls_a(d2)
	assert not [n for n in names if n in scratch or n == '.#' + x]
	assert x in names
	assert read(m2.p('people', x)) == text(rec)
	expect(emulator, [])


def test_scratch_renamed_onto_record_while_open_saves_at_close(emulator,
							       mnt):
	rec, path = person(emulator, mnt)
	new = with_field(read(path), 'title', 'Renamed While Open').encode()
	tmp = mnt.p('people', '.%s.json.Xy9Zq1' % rec['id'])
	fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
	try:
		half = len(new) // 2
		os.write(fd, new[:half])
		os.rename(tmp, path)
		assert not os.path.lexists(tmp)
		# The rename alone is no save: the text is half written.
		expect(emulator, [])
		assert server(emulator, 'people', rec['id']) == rec
		os.write(fd, new[half:])
		expect(emulator, [])
	finally:
		os.close(fd)		# raises if the save failed
	expect(emulator, [('PATCH', '/people/' + rec['id'], {'title'})])
	now = server(emulator, 'people', rec['id'])
	assert now['title'] == 'Renamed While Open'
	assert {k: v for k, v in now.items() if k not in ('title',
							 'updatedTime')} == \
		{k: v for k, v in rec.items() if k not in ('title',
							 'updatedTime')}
	assert read(path) == text(now)
	assert_attrs_match(path, now)
	expect(emulator, [('PATCH', '/people/' + rec['id'], {'title'})])


def test_record_renamed_to_scratch_name_then_recreated(emulator, mnt):
	os.listdir(mnt.p('people'))	# listed below: cached, so free
	rec, path = person(emulator, mnt)
	bak = path + '.bak'
	r = subprocess.run(['mv', path, bak], capture_output=True, text=True)
	assert r.returncode == 0, r.stderr
	assert read(bak) == text(rec)
	assert not os.path.lexists(path)
	assert rec['id'] + '.json' not in os.listdir(mnt.p('people'))
	assert rec['id'] + '.json.bak' in os.listdir(mnt.p('people'))
	with pytest.raises(FileNotFoundError):
		open(path, 'rb')
	expect(emulator, [])
	assert server(emulator, 'people', rec['id']) == rec

	# Writing the record name anew (as emacs does after its backup
	# rename) is an update of the same record, not a create.
	n_people = len(records(emulator, 'people'))
	new = with_field(text(rec), 'title', 'Back Again')
	assert write_file(path, new, os.O_WRONLY | os.O_CREAT | os.O_EXCL) \
		is None
	expect(emulator, [('PATCH', '/people/' + rec['id'], {'title'})])
	now = server(emulator, 'people', rec['id'])
	assert now['title'] == 'Back Again'
	assert len(records(emulator, 'people')) == n_people
	assert read(path) == text(now)
	assert_attrs_match(path, now)
	assert read(bak) == text(rec)
	expect(emulator, [('PATCH', '/people/' + rec['id'], {'title'})])


# ---------------------------------------------------------------- stat

@pytest.mark.parametrize('how', ['in-place', 'rename-over'])
def test_stat_after_save_shows_size_and_updated_time(emulator, mnt, how):
	os.listdir(mnt.p('people'))	# listed below: cached, so free
	rec, path = person(emulator, mnt)
	st0 = os.stat(path)
	assert st0.st_size == len(text(rec).encode())
	# A longer value, so a stale cached size would show.
	value = 'Stat Check ' * 7 + how
	new = with_field(read(path), 'title', value)
	if how == 'in-place':
		assert write_file(path, new) is None
	else:
		with tempfile.NamedTemporaryFile('w', dir=mnt.p('people'),
						 delete=False) as f:
			f.write(new)
		os.replace(f.name, path)
	expect(emulator, [('PATCH', '/people/' + rec['id'], {'title'})])
	now = server(emulator, 'people', rec['id'])
	assert now['title'] == value
	assert now['updatedTime'] != rec['updatedTime']
	assert_attrs_match(path, now)
	# A listing shows the same attributes.
	d = mnt.p('people')
	for e in os.scandir(d):
		if e.name == rec['id'] + '.json':
			st = e.stat()
			assert st.st_size == len(text(now).encode())
			assert int(st.st_mtime) == \
				int(iso_to_epoch(now['updatedTime']))
			break
	else:
		raise AssertionError('%s not listed' % path)
	expect(emulator, [('PATCH', '/people/' + rec['id'], {'title'})])


# ---------------------------------------------------------------- refusals

def test_queued_save_refused_later_moves_to_rejected(emulator, mnt):
	rec, path = person(emulator, mnt)
	name = rec['id'] + '.json'
	bad = with_field(read(path), 'tags', 'not-a-list')
	emulator.config(fail_rate=1.0)
	try:
		assert write_file(path, bad) is None
		pend = mnt.status()['pending']
		assert [p['file'] for p in pend] == ['people/' + name], pend
		assert pend[0]['method'] == 'PATCH'
		assert status_files(mnt, 'rejected') == []
		assert server(emulator, 'people', rec['id']) == rec
	finally:
		emulator.config(fail_rate=0)

	def refused():
		st = mnt.status()
		return not st['pending'] and \
			listed([e['file'] for e in st['rejected']], 'people',
			       name)
	wait_for(refused, DELIVERY_TIMEOUT, 'the queued save to be refused')
	reqs = settle(emulator, 1, quiet=0.5)
	# Only PATCHes of this record were tried; all failed with the 503 of
	# the outage but the last, which the server refused.
	assert {(r['method'], api_path(r['path'])) for r in reqs} == \
		{('PATCH', '/people/' + rec['id'])}, _fmt(reqs)
	assert [r['status'] for r in reqs[:-1]] == [503] * (len(reqs) - 1), \
		_fmt(reqs)
	assert reqs[-1]['status'] == 400, _fmt(reqs)
	assert body_keys(reqs[-1]) == {'tags'}
	assert body_of(reqs[-1]) == {'tags': 'not-a-list'}
	assert server(emulator, 'people', rec['id']) == rec
	assert read(rejected_path(mnt, name)) == bad
	assert name in os.listdir(mnt.p('.klipy', 'rejected', 'people'))
	lines = [ln for ln in mnt.log().splitlines()
		 if 'VALIDATION_ERROR' in ln and name in ln]
	assert lines, mnt.log()[-3000:]

	os.unlink(rejected_path(mnt, name))
	assert not os.path.lexists(rejected_path(mnt, name))
	assert status_files(mnt, 'rejected') == []
	assert status_files(mnt, 'pending') == []
	# The record file is the server's again (it may be fetched once).
	n = len(reqs)
	assert read(path) == text(rec)
	more = settle(emulator, n, quiet=0.3)[n:]
	assert [(r['method'], api_path(r['path'])) for r in more] in \
		([], [('GET', '/people/' + rec['id'])]), _fmt(more)


@pytest.mark.parametrize('how', ['fusermount', 'sigterm'])
def test_unmount_with_queued_save_waits_then_remount_delivers(
		emulator, mount_fs, tmp_path, how):
	cache = str(tmp_path / 'cache')
	m = mount_fs(emulator, '--flush-timeout=2', cache_dir=cache)
	rec, path = person(emulator, m)
	new = with_field(read(path), 'title', 'Queued At Unmount')
	emulator.config(fail_rate=1.0)
	try:
		assert write_file(path, new) is None
		assert read(path) == new
		assert listed(status_files(m, 'pending'), 'people',
			      rec['id'] + '.json')
		t0 = time.monotonic()
		if how == 'fusermount':
			m.umount()
		else:
			os.kill(m.proc.pid, signal.SIGTERM)
			assert m.wait() == 0, m.log()[-3000:]
			assert not m.mounted()
		took = time.monotonic() - t0
		assert 1.5 <= took < 6.0, 'unmount took %.1f s' % took
		assert server(emulator, 'people', rec['id']) == rec
	finally:
		emulator.config(fail_rate=0)
	log = m.log()
	assert re.search(r'\b1 saves? [^\n]*queued', log), log[-3000:]
	reqs = emulator.requests()
	assert {(r['method'], api_path(r['path'])) for r in reqs} == \
		{('PATCH', '/people/' + rec['id'])}, _fmt(reqs)
	assert all(r['status'] == 503 for r in reqs), _fmt(reqs)

	m2 = mount_fs(emulator, cache_dir=cache)
	_wait_delivered(emulator, rec['id'], 'title', 'Queued At Unmount')
	ok = _patches_ok(emulator, rec['id'])
	assert len(ok) == 1, _fmt(emulator.requests())
	assert body_keys(ok[0]) == {'title'}
	wait_for(lambda: status_files(m2, 'pending') == [], 5,
		 'the journal to empty')
	now = server(emulator, 'people', rec['id'])
	assert read(m2.p('people', rec['id'] + '.json')) == text(now)
	# Nothing more goes out: the journal held it once.
	time.sleep(1.0)
	assert len(_patches_ok(emulator, rec['id'])) == 1


def test_batch_with_one_bad_file(emulator, mnt):
	recs = people(emulator, 3)
	paths = [mnt.p('people', r['id'] + '.json') for r in recs]
	for r, p in zip(recs, paths):
		assert read(p) == text(r)
	emulator.reset()
	texts = [with_field(text(r), 'title', 'Batch %d' % i)
		 for i, r in enumerate(recs)]
	texts[1] = texts[1].replace('{', '', 1)		# not JSON any more
	errs = [write_file(p, t) for p, t in zip(paths, texts)]
	assert errs == [None, errno.EINVAL, None]
	expect(emulator, [('PATCH', '/people/' + recs[0]['id'], {'title'}),
			  ('PATCH', '/people/' + recs[2]['id'], {'title'})])
	now = records(emulator, 'people')
	assert now[recs[0]['id']]['title'] == 'Batch 0'
	assert now[recs[2]['id']]['title'] == 'Batch 2'
	assert now[recs[1]['id']] == recs[1]
	assert read(paths[0]) == text(now[recs[0]['id']])
	assert read(paths[2]) == text(now[recs[2]['id']])
	assert read(paths[1]) == text(recs[1])
	name = recs[1]['id'] + '.json'
	assert read(rejected_path(mnt, name)) == texts[1]
	assert status_files(mnt, 'rejected') == ['people/' + name]
	assert status_files(mnt, 'pending') == []
	expect(emulator, [('PATCH', '/people/' + recs[0]['id'], {'title'}),
			  ('PATCH', '/people/' + recs[2]['id'], {'title'})])


def test_batch_shell_loop_with_one_bad_file(emulator, mnt, tmp_path):
	recs = people(emulator, 3, skip=3)
	ids = [r['id'] for r in recs]
	for r in recs:
		assert read(mnt.p('people', r['id'] + '.json')) == text(r)
	emulator.reset()
	src = tmp_path / 'src'
	src.mkdir()
	for i, r in enumerate(recs):
		t = with_field(text(r), 'title', 'Loop %d' % i)
		if i == 1:
			t = t.replace('"', '', 1)
		(src / r['id']).write_text(t)
	script = 'for f in "$@"; do cat "%s/$f" > "%s/$f.json"; done' % (
		src, mnt.p('people'))
	subprocess.run(['bash', '-c', script, 'bash'] + ids, check=True)
	expect(emulator, [('PATCH', '/people/' + ids[0], {'title'}),
			  ('PATCH', '/people/' + ids[2], {'title'})])
	now = records(emulator, 'people')
	assert now[ids[0]]['title'] == 'Loop 0'
	assert now[ids[2]]['title'] == 'Loop 2'
	assert now[ids[1]] == recs[1]
	assert read(rejected_path(mnt, ids[1] + '.json')) == \
		(src / ids[1]).read_text()
	# bash ignores the failed close; the log names the file.
	assert [ln for ln in mnt.log().splitlines()
		if ids[1] + '.json' in ln], mnt.log()[-3000:]
	assert read(mnt.p('people', ids[1] + '.json')) == text(recs[1])


def test_create_with_taken_email_is_eexist(emulator, mnt):
	os.listdir(mnt.p('people'))
	taken = people(emulator, 1, skip=1)[0]
	emulator.reset()
	before = records(emulator, 'people')
	body = {'firstName': 'Dup', 'lastName': 'Licate',
		'email': taken['email']}
	data = json.dumps(body, indent=2) + '\n'
	path = mnt.p('people', 'new.json')
	post = ('POST', '/people', set(body))
	# `cat > people/new.json`: cat checks the close of its output.
	r = subprocess.run(['sh', '-c', 'cat > "$1"', 'sh', path], input=data,
			   capture_output=True, text=True)
	assert r.returncode != 0, r
	assert 'File exists' in r.stderr, r.stderr
	reqs = expect(emulator, [post], misses=['/people/new'])
	assert reqs[0]['status'] == 409
	assert body_of(reqs[0]) == body
	assert records(emulator, 'people') == before
	assert read(rejected_path(mnt, 'new.json')) == data
	assert status_files(mnt, 'rejected') == ['people/new.json']
	assert status_files(mnt, 'pending') == []
	lines = [ln for ln in mnt.log().splitlines()
		 if 'new.json' in ln and 'CONFLICT' in ln]
	assert lines, mnt.log()[-3000:]
	# Saved again, the server is asked again and close says EEXIST.
	assert write_file(path, data, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) \
		== errno.EEXIST
	reqs = expect(emulator, [post, post], misses=['/people/new'])
	assert [r['status'] for r in reqs] == [409, 409]
	assert records(emulator, 'people') == before
	assert read(rejected_path(mnt, 'new.json')) == data
	assert status_files(mnt, 'rejected') == ['people/new.json']


# ---------------------------------------------------------------- offline

def test_offline_save_is_queued_and_delivered_online(emulator, mount_fs,
						     tmp_path):
	cache = str(tmp_path / 'cache')
	m = mount_fs(emulator, cache_dir=cache)
	rec, path = person(emulator, m)
	m.umount()
	emulator.reset()

	# Without --flush-timeout an offline unmount with a queued save
	# waits the whole default grace (10 s), though it sends nothing.
	off = mount_fs(emulator, '--offline', '--flush-timeout=2',
		       cache_dir=cache)
	opath = off.p('people', rec['id'] + '.json')
	assert read(opath) == text(rec)
	new = with_field(read(opath), 'title', 'Written Offline')
	assert write_file(opath, new) is None
	assert read(opath) == new
	assert os.stat(opath).st_size == len(new.encode())
	pend = off.status()['pending']
	assert [p['file'] for p in pend] == ['people/' + rec['id'] + '.json']
	assert off.status()['api']['offline'] is True
	t0 = time.monotonic()
	off.umount()
	assert time.monotonic() - t0 < 6.0
	assert re.search(r'\b1 saves? [^\n]*queued', off.log())
	# An offline mount talks to nobody, not even at unmount.
	expect(emulator, [])
	assert server(emulator, 'people', rec['id']) == rec

	m2 = mount_fs(emulator, cache_dir=cache)
	got = _wait_delivered(emulator, rec['id'], 'title', 'Written Offline')
	ok = _patches_ok(emulator, rec['id'])
	assert len(ok) == 1, _fmt(emulator.requests())
	assert body_keys(ok[0]) == {'title'}
	assert {k: v for k, v in got.items() if k not in ('title',
							 'updatedTime')} == \
		{k: v for k, v in rec.items() if k not in ('title',
							 'updatedTime')}
	wait_for(lambda: status_files(m2, 'pending') == [], 5,
		 'the journal to empty')
	assert read(m2.p('people', rec['id'] + '.json')) == \
		text(server(emulator, 'people', rec['id']))
	time.sleep(1.0)
	assert len(_patches_ok(emulator, rec['id'])) == 1


# ---------------------------------------------------------------- status

def _daemon_counts(m):
	return dict(m.status()['api']['requests'])


def _diff(after, before):
	out = {}
	for k, v in after.items():
		if v - before.get(k, 0):
			out[k] = v - before.get(k, 0)
	return out


def test_status_request_counts_match_the_server(emulator, mnt):
	# The mount's GET /authenticate is not in the daemon's counts: compare
	# from here on.
	d0 = _daemon_counts(mnt)
	t = Traffic(emulator)

	names = os.listdir(mnt.p('people'))
	recs = people(emulator, 3)
	for r in recs:
		assert read(mnt.p('people', r['id'] + '.json')) == \
			text(server(emulator, 'people', r['id']))
	cid = next(iter(records(emulator, 'companies')))
	read(mnt.p('companies', cid + '.json'))
	assert not os.path.exists(mnt.p('people', 'nosuchperson.json'))
	path = mnt.p('people', recs[0]['id'] + '.json')
	assert write_file(path, with_field(read(path), 'title',
					   'Counted')) is None
	settle(emulator, 1)
	assert len(names) == len(records(emulator, 'people'))

	got = _diff(_daemon_counts(mnt), d0)
	want = t.delta()
	assert got == want, 'daemon %s, server %s' % (got, want)
	assert want.get('PATCH /people/{id}') == 1, want
	assert want.get('POST /people/query') == 3, want
	assert mnt.status()['api']['total'] == sum(
		_daemon_counts(mnt).values())
	# Reading the status costs nothing.
	assert t.delta() == want


# ------------------------------------------------- editors that stay open

def _vim_two_saves(path, first, second, backupcopy):
	"""One vim session: two substitutions, each followed by :w."""
	opts = 'set swapfile backup writebackup backupskip= backupcopy=' + \
		backupcopy
	argv = ['vim', '-u', 'NONE', '-N', '-i', 'NONE', '-es', '-c', opts]
	for old, new in (first, second):
		argv += ['-c', '%%s/%s/%s/' % (old, new), '-c', 'w']
	argv += ['-c', 'q', os.path.basename(path)]
	return subprocess.run(argv, cwd=os.path.dirname(path), timeout=30,
			      stdin=subprocess.DEVNULL, capture_output=True,
			      text=True)


@pytest.mark.parametrize('backupcopy', ['yes', 'no'])
def test_second_save_from_an_open_editor_patches_only_its_change(
		emulator, mnt, backupcopy):
	rec, path = person(emulator, mnt)
	title = rec.get('title') or ''
	first = ('"firstName": "[^"]*"', '"firstName": "Once"')
	second = ('"lastName": "[^"]*"', '"lastName": "Twice"')
	res = _vim_two_saves(path, first, second, backupcopy)
	assert res.returncode == 0, res.stderr
	expect(emulator, [('PATCH', '/people/' + rec['id'], {'firstName'}),
			  ('PATCH', '/people/' + rec['id'], {'lastName'})])
	now = server(emulator, 'people', rec['id'])
	assert (now['firstName'], now['lastName']) == ('Once', 'Twice')
	assert (now.get('title') or '') == title
	assert read(path) == text(now)


def test_stale_buffers_of_two_writers_last_save_wins(emulator, mnt):
	"""Two buffers of one mount read the same version and each changes
	its own field: the last save wins for what this mount wrote, as on a
	local disk (an editor warns that the file changed since it was read)."""
	rec, path = person(emulator, mnt)
	old = read(path)
	assert write_file(path, with_field(old, 'title', 'From A')) is None
	# B still holds the version both read, with its old updatedTime.
	assert write_file(path, with_field(old, 'phone', '+1 555 0100')) \
		is None
	expect(emulator, [('PATCH', '/people/' + rec['id'], {'title'}),
			  ('PATCH', '/people/' + rec['id'], {'phone', 'title'})])
	now = server(emulator, 'people', rec['id'])
	assert (now['title'], now['phone']) == (rec['title'], '+1 555 0100')
	assert read(path) == text(now)


def test_other_fields_changed_elsewhere_survive_a_stale_buffer(emulator,
								 mnt):
	"""A change made by another client to a field the user did not touch
	survives a save from an older buffer."""
	rec, path = person(emulator, mnt)
	old = read(path)
	status, _ = api_call(emulator, 'PATCH', '/people/' + rec['id'],
			     {'title': 'Set elsewhere'})
	assert status == 200
	emulator.reset()
	assert write_file(path, with_field(old, 'phone', '+1 555 0101')) \
		is None
	reqs = [r for r in settle(emulator) if r['method'] != 'GET']
	assert [(r['method'], body_keys(r)) for r in reqs] == \
		[('PATCH', {'phone'})]
	now = server(emulator, 'people', rec['id'])
	assert (now['title'], now['phone']) == ('Set elsewhere', '+1 555 0101')


def test_stale_buffer_changing_the_same_field_last_save_wins(emulator, mnt):
	"""Two buffers of one mount change the same field: values this mount
	wrote are the user's own, so the last save wins, as on a local disk
	(README, "Which version a save is compared with")."""
	rec, path = person(emulator, mnt)
	old = read(path)
	assert write_file(path, with_field(old, 'title', 'From A')) is None
	assert write_file(path, with_field(old, 'title', 'From B')) is None
	expect(emulator, [('PATCH', '/people/' + rec['id'], {'title'}),
			  ('PATCH', '/people/' + rec['id'], {'title'})])
	now = server(emulator, 'people', rec['id'])
	assert now['title'] == 'From B'
	assert read(path) == text(now)
	assert status_files(mnt, 'rejected') == []


def test_resaving_a_created_text_sends_nothing(emulator, mnt):
	"""The text a record was created from is partial: what it leaves out
	(tags, null fields the server added) is not cleared by saving it
	again."""
	body = {'firstName': 'Par', 'lastName': 'Tial',
		'email': 'par.tial@example.com'}
	path = mnt.p('people', 'partial.json')
	assert write_file(path, json.dumps(body),
			  os.O_WRONLY | os.O_CREAT | os.O_TRUNC) is None
	reqs = [r for r in settle(emulator, 3) if r['method'] != 'GET']
	assert [r['method'] for r in reqs] == ['POST'], _fmt(reqs)
	emulator.reset()
	assert write_file(path, json.dumps(body) + '\n') is None
	assert settle(emulator) == []


# ------------------------------------------------- refusals as editors see them

def test_refusal_at_fsync_is_reported_again_at_close(emulator, mnt):
	"""emacs ignores an error from fsync; the close must still fail."""
	rec, path = person(emulator, mnt)
	fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
	os.write(fd, b'{"not": "closed"')
	with pytest.raises(OSError) as e:
		os.fsync(fd)
	assert e.value.errno == errno.EINVAL
	with pytest.raises(OSError) as e:
		os.close(fd)
	assert e.value.errno == errno.EINVAL
	assert settle(emulator) == []
	assert read(path) == text(rec)


def test_refused_text_of_another_size_never_cuts_the_record(emulator, mnt):
	"""The kernel saw the refused text's size (fchmod asks for attributes
	while the file is open); reading afterwards returns the whole
	record, not as many bytes as the refused text had."""
	rec, path = person(emulator, mnt)
	bad = with_field(read(path), 'id', 'x')	# shorter, refused locally
	fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
	os.write(fd, bad.encode())
	os.fchmod(fd, 0o644)
	assert os.fstat(fd).st_size == len(bad.encode())
	with pytest.raises(OSError) as e:
		os.close(fd)
	assert e.value.errno == errno.EINVAL
	assert read(path) == text(rec)
	assert os.stat(path).st_size == len(text(rec).encode())
	r = subprocess.run(['cat', path], capture_output=True)
	assert r.stdout == text(rec).encode()
	assert settle(emulator) == []


# ------------------------------------------------- delete, and replace

def test_mv_from_another_file_system_is_an_update(emulator, mnt, tmp_path):
	"""mv across file systems unlinks the record and creates it again:
	that is one PATCH, never a DELETE and a POST (a new id)."""
	rec, path = person(emulator, mnt)
	local = tmp_path / 'edit.json'
	local.write_text(with_field(read(path), 'title', 'Moved in'))
	r = subprocess.run(['mv', str(local), path], capture_output=True,
			   text=True, timeout=30)
	assert r.returncode == 0, r.stderr
	time.sleep(2.0)		# past the delay a DELETE would wait
	reqs = [r for r in settle(emulator) if r['method'] != 'GET']
	assert [(r['method'], api_path(r['path'])) for r in reqs] == \
		[('PATCH', '/people/' + rec['id'])], _fmt(reqs)
	assert body_keys(reqs[0]) == {'title'}
	now = server(emulator, 'people', rec['id'])
	assert now['title'] == 'Moved in'
	assert read(path) == text(now)


def test_rm_hides_the_record_and_every_name_that_created_it(emulator, mnt):
	body = {'firstName': 'Short', 'lastName': 'Lived',
		'email': 'short.lived@example.com'}
	made = mnt.p('people', 'shortlived.json')
	assert write_file(made, json.dumps(body),
			  os.O_WRONLY | os.O_CREAT | os.O_TRUNC) is None
	new = [r for r in records(emulator, 'people').values()
	       if r['email'] == body['email']][0]
	assert new['id'] + '.json' in os.listdir(mnt.p('people'))
	emulator.reset()
	assert os.stat(made).st_size > 0	# the kernel knows this name
	os.unlink(mnt.p('people', new['id'] + '.json'))
	assert not os.path.exists(made)
	with pytest.raises(FileNotFoundError):
		os.stat(made)
	assert not os.path.exists(mnt.p('people', new['id'] + '.json'))
	assert new['id'] + '.json' not in os.listdir(mnt.p('people'))
	expect(emulator, [('DELETE', '/people/' + new['id'])])
	assert server(emulator, 'people', new['id']) is None


def test_queued_create_shows_again_after_remount(emulator, mount_fs,
						 tmp_path):
	cache = str(tmp_path / 'cache')
	m = mount_fs(emulator, '--flush-timeout=0', cache_dir=cache)
	os.listdir(m.p('people'))
	body = {'firstName': 'Queued', 'lastName': 'Create',
		'email': 'queued.create@example.com'}
	data = json.dumps(body) + '\n'
	path = m.p('people', 'queued create.json')
	emulator.config(fail_rate=1.0)
	try:
		assert write_file(path, data,
				  os.O_WRONLY | os.O_CREAT | os.O_TRUNC) is None
		m.umount()
		m2 = mount_fs(emulator, '--offline', cache_dir=cache)
		assert read(m2.p('people', 'queued create.json')) == data
		assert 'queued create.json' in os.listdir(m2.p('people'))
		# Saving it again rewrites the queued create: still one POST.
		data2 = json.dumps(dict(body, lastName='Created')) + '\n'
		assert write_file(m2.p('people', 'queued create.json'), data2) is None
		m2.umount()
	finally:
		emulator.config(fail_rate=0)
	emulator.reset()
	m3 = mount_fs(emulator, cache_dir=cache)
	wait_for(lambda: any(r['email'] == body['email'] for r in
			     records(emulator, 'people').values()),
		 DELIVERY_TIMEOUT, 'the queued create')
	time.sleep(1.0)
	posts = [r for r in emulator.requests() if r['method'] == 'POST']
	assert len(posts) == 1, _fmt(emulator.requests())
	made = [r for r in records(emulator, 'people').values()
		if r['email'] == body['email']]
	assert len(made) == 1 and made[0]['lastName'] == 'Created'
	assert json.loads(read(m3.p('people', made[0]['id'] + '.json'))) == \
		made[0]


def test_offline_create_of_an_id_like_name_is_queued(emulator, mount_fs,
						      tmp_path):
	cache = str(tmp_path / 'cache')
	m = mount_fs(emulator, cache_dir=cache)
	os.listdir(m.p('people'))
	m.umount()
	m2 = mount_fs(emulator, '--offline', '--flush-timeout=0',
		      cache_dir=cache)
	data = json.dumps({'firstName': 'Off', 'lastName': 'Line',
			   'email': 'off.line@example.com'}) + '\n'
	emulator.reset()
	assert write_file(m2.p('people', 'offlinenew.json'), data,
			  os.O_WRONLY | os.O_CREAT | os.O_TRUNC) is None
	assert read(m2.p('people', 'offlinenew.json')) == data
	assert listed(status_files(m2, 'pending'), 'people', 'offlinenew.json')
	assert emulator.requests() == []


# ------------------------------------------------- times, and lost answers

def test_mtime_after_a_save_is_the_servers_and_stays(emulator, mount_fs):
	"""Editors compare the time they saw after saving with later stats:
	it must be the server's updatedTime at once, to the millisecond, and
	not move when the cache refreshes."""
	m = mount_fs(emulator, ttl=1)
	rec, path = person(emulator, m)
	new = with_field(read(path), 'title', 'Timed')
	fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
	os.write(fd, new.encode())
	os.fsync(fd)
	right_after = os.fstat(fd).st_mtime_ns
	os.close(fd)
	now = server(emulator, 'people', rec['id'])
	want = round(iso_to_epoch(now['updatedTime']) * 1000) * 1000000
	assert right_after == want
	assert os.stat(path).st_mtime_ns == want
	time.sleep(1.5)
	assert os.stat(path).st_mtime_ns == want


def test_rm_of_a_queued_create_takes_it_back(emulator, mount_fs, tmp_path):
	cache = str(tmp_path / 'cache')
	m = mount_fs(emulator, '--flush-timeout=0', cache_dir=cache)
	os.listdir(m.p('people'))
	email = 'taken.back@example.com'
	path = m.p('people', 'taken back.json')
	emulator.config(fail_rate=1.0)
	try:
		assert write_file(path, json.dumps({'firstName': 'Taken',
						    'email': email}),
				  os.O_WRONLY | os.O_CREAT | os.O_TRUNC) is None
		assert listed(status_files(m, 'pending'), 'people',
			      'taken back.json')
		os.unlink(path)
		assert not os.path.exists(path)
		assert status_files(m, 'pending') == []
	finally:
		emulator.config(fail_rate=0)
	m.umount()
	emulator.reset()
	m2 = mount_fs(emulator, cache_dir=cache)
	time.sleep(2.0)
	assert [r for r in emulator.requests() if r['method'] == 'POST'] == []
	assert not any(r.get('email') == email
		       for r in records(emulator, 'people').values())
	assert 'taken back.json' not in os.listdir(m2.p('people'))


def test_create_whose_answer_was_lost_is_not_made_twice(emulator, mnt):
	"""The server takes the POST but answers too late (it hangs): the
	retry finds the record (409 names it) instead of making another."""
	os.listdir(mnt.p('people'))
	email = 'lost.answer@example.com'
	path = mnt.p('people', 'lost answer.json')
	emulator.proc.send_signal(signal.SIGSTOP)
	try:
		assert write_file(path, json.dumps({'firstName': 'Lost',
						    'email': email}),
				  os.O_WRONLY | os.O_CREAT | os.O_TRUNC) is None
	finally:
		emulator.proc.send_signal(signal.SIGCONT)
	wait_for(lambda: status_files(mnt, 'pending') == [],
		 DELIVERY_TIMEOUT, 'the queued create')
	made = [r for r in records(emulator, 'people').values()
		if r.get('email') == email]
	assert len(made) == 1, made
	assert status_files(mnt, 'rejected') == [], mnt.log()[-3000:]
	assert json.loads(read(mnt.p('people', made[0]['id'] + '.json'))) == \
		made[0]


def test_rm_by_the_creating_name_deletes_the_record(emulator, mnt):
	body = {'firstName': 'Gone', 'lastName': 'ByName',
		'email': 'gone.byname@example.com'}
	made = mnt.p('people', 'byname.json')
	fd = os.open(made, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
	os.write(fd, json.dumps(body).encode())
	os.fsync(fd)		# created while still open
	new = [r for r in records(emulator, 'people').values()
	       if r['email'] == body['email']][0]
	os.listdir(mnt.p('people'))
	emulator.reset()
	os.unlink(made)
	os.close(fd)
	names = os.listdir(mnt.p('people'))
	assert 'byname.json' not in names
	assert new['id'] + '.json' not in names
	expect(emulator, [('DELETE', '/people/' + new['id'])])
	assert server(emulator, 'people', new['id']) is None
