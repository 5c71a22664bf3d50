"""Edges a new user ran into: repeated saves from one editor buffer, reads
right after a refused save, refused renames, names and bytes the API cannot
take, deleted companies, and where the log goes when the daemon runs in
the background.  Same witnesses as test_write.py: the file read back, the
emulator's record and its request log.
"""

import errno
import json
import os
import subprocess
import time

import pytest

import editors
from mountutil import is_mounted
from test_write import (api_call, body_keys, expect, listed, people, person,
			read, records, server, settle, status_files, text,
			with_field, write_file)


def vim_script(path, *commands):
	"""Run vim in Ex mode on @path with @commands, vim's defaults."""
	argv = ['vim', '-u', 'NONE', '-N', '-i', 'NONE', '-Es']
	for c in commands:
		argv += ['-c', c]
	return editors.run(argv + [os.path.basename(path)], check=False,
			   cwd=os.path.dirname(path))


@pytest.mark.skipif(not editors.have('vim'), reason='vim not installed')
def test_vim_saving_the_same_field_twice_patches_twice(emulator, mnt):
	rec, path = person(emulator, mnt)
	res = vim_script(path, '%s/"title": .*/"title": "first",/', 'w',
			 '%s/"title": .*/"title": "second",/', 'w', 'q')
	assert res.returncode == 0, res.stdout + res.stderr
	expect(emulator, [('PATCH', '/people/' + rec['id'], {'title'}),
			  ('PATCH', '/people/' + rec['id'], {'title'})])
	new = server(emulator, 'people', rec['id'])
	assert new['title'] == 'second'
	assert read(path) == text(new)
	assert 'CONFLICT' not in mnt.log()


@pytest.mark.skipif(not editors.have('vim'), reason='vim not installed')
def test_vim_undo_then_save_takes_the_change_back(emulator, mnt):
	rec, path = person(emulator, mnt)
	res = vim_script(path, '%s/"title": .*/"title": "Oops",/', 'w', 'undo',
			 'w', 'q')
	assert res.returncode == 0, res.stdout + res.stderr
	expect(emulator, [('PATCH', '/people/' + rec['id'], {'title'}),
			  ('PATCH', '/people/' + rec['id'], {'title'})])
	new = server(emulator, 'people', rec['id'])
	assert new['title'] == rec['title']
	assert read(path) == text(new)


def test_restoring_a_copy_takes_this_mounts_changes_back(emulator, mnt,
							tmp_path):
	rec, path = person(emulator, mnt)
	backup = tmp_path / 'backup.json'
	backup.write_text(read(path))
	subprocess.run(['sed', '-i', 's/"title": [^,]*/"title": "Changed"/',
			path], check=True)
	subprocess.run(['cp', str(backup), path], check=True)
	expect(emulator, [('PATCH', '/people/' + rec['id'], {'title'}),
			  ('PATCH', '/people/' + rec['id'], {'title'})])
	assert server(emulator, 'people', rec['id'])['title'] == rec['title']


def test_many_saves_from_one_buffer_all_go_through(emulator, mnt):
	"""An editor keeps the updatedTime it read across all its saves, more
	of them than the versions the daemon keeps texts of."""
	rec, path = person(emulator, mnt)
	old = read(path)
	for i in range(12):
		assert write_file(path, with_field(old, 'title', 'V%d' % i)) \
			is None
	assert [r['method'] for r in settle(emulator, 12)] == ['PATCH'] * 12
	assert server(emulator, 'people', rec['id'])['title'] == 'V11'


def test_second_save_under_a_saveas_name_patches(emulator, mnt):
	"""vim's :saveas new.json keeps the buffer, with the old record's id:
	the first save creates, the second patches the new record."""
	rec, path = person(emulator, mnt)
	copy = json.loads(read(path))
	copy['email'] = 'saveas.copy@example.com'
	new_path = mnt.p('people', 'saveas-copy.json')
	assert write_file(new_path, text(copy),
			  os.O_WRONLY | os.O_CREAT | os.O_TRUNC) is None
	reqs = [r for r in settle(emulator, 1) if r['method'] != 'GET']
	assert [r['method'] for r in reqs] == ['POST']
	emulator.reset()
	copy['title'] = 'Second save'
	assert write_file(new_path, text(copy)) is None
	reqs = [r for r in settle(emulator, 1) if r['method'] != 'GET']
	assert [(r['method'], body_keys(r)) for r in reqs] == \
		[('PATCH', {'title'})]
	assert server(emulator, 'people', rec['id']) == rec


@pytest.mark.skipif(not editors.have('vim'), reason='vim not installed')
def test_reads_after_a_refused_vim_save_are_whole(emulator, mnt):
	rec, path = person(emulator, mnt)
	for _ in range(3):
		res = vim_script(path, '%s/"email": "[^"]*"/"email": "bad"/',
				 'w', 'q!')
		assert res.returncode != 0	# vim saw the refusal
		got = read(path)
		assert got == text(rec)
		assert os.stat(path).st_size == len(got.encode())
	assert server(emulator, 'people', rec['id']) == rec


def test_refused_rename_keeps_its_source(emulator, mount_fs):
	"""A conflict found at rename fails the rename with ESTALE (the kernel
	retries it once) and leaves the renamed file where it was."""
	m = mount_fs(emulator, ttl=1)
	rec, path = person(emulator, m)
	old = read(path)
	status, _ = api_call(emulator, 'PATCH', '/people/' + rec['id'],
			     {'title': 'Changed elsewhere'})
	assert status == 200
	time.sleep(1.3)			# the cached copy is older than the TTL
	tmp = m.p('people', '.edit.tmp')
	mine = with_field(old, 'title', 'Mine')
	with open(tmp, 'w') as f:
		f.write(mine)
	emulator.reset()
	with pytest.raises(OSError) as e:
		os.rename(tmp, path)
	assert e.value.errno == errno.ESTALE
	assert read(tmp) == mine
	assert server(emulator, 'people', rec['id'])['title'] == \
		'Changed elsewhere'
	assert [r['method'] for r in settle(emulator)
		if r['method'] != 'GET'] == []
	assert listed(status_files(m, 'rejected'), 'people',
		      rec['id'] + '.json')
	assert m.log().count('CONFLICT') == 1


def test_text_that_is_not_utf8_is_refused(emulator, mnt):
	rec, path = person(emulator, mnt)
	bad = read(path).replace('"id"', '"title": "bad \udcff\udcfe",\n  "id"',
				 1).encode('utf-8', 'surrogateescape')
	fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
	os.write(fd, bad)
	with pytest.raises(OSError) as e:
		os.close(fd)
	assert e.value.errno == errno.EINVAL
	expect(emulator, [])
	assert server(emulator, 'people', rec['id']) == rec
	assert read(path) == text(rec)
	assert 'not valid UTF-8' in mnt.log()


def test_names_over_255_bytes_are_too_long(emulator, mnt):
	long_name = 'a' * 251 + '.json'		# 256 bytes
	with pytest.raises(OSError) as e:
		open(mnt.p('people', long_name), 'w').close()
	assert e.value.errno == errno.ENAMETOOLONG
	ok_name = 'a' * 250 + '.json'		# 255 bytes: a draft, kept local
	open(mnt.p('people', ok_name), 'w').close()
	assert ok_name in os.listdir(mnt.p('people'))
	assert [r for r in settle(emulator) if r['method'] != 'GET' and
		'query' not in r['path']] == []


def test_record_renamed_away_and_back_keeps_its_mtime(emulator, mnt):
	rec, path = person(emulator, mnt)
	before = os.stat(path).st_mtime
	os.rename(path, path + '.bak')
	assert os.stat(path + '.bak').st_mtime == before
	os.listdir(mnt.p('people'))
	os.rename(path + '.bak', path)
	assert os.stat(path).st_mtime == before
	assert read(path) == text(rec)
	assert [r['method'] for r in settle(emulator)
		if r['method'] not in ('GET', 'POST')] == []


def test_deleted_company_stays_gone_after_a_remount(emulator, mount_fs,
						      tmp_path):
	cache = str(tmp_path / 'cache')
	m = mount_fs(emulator, cache_dir=cache)
	known = set(os.listdir(m.p('companies')))
	# A company some person names: it is re-learned with every listing.
	named = [r['companyId'] for r in records(emulator, 'people').values()
		 if r.get('companyId') and r['companyId'] + '.json' in known]
	assert named
	victim = named[0]
	os.unlink(m.p('companies', victim + '.json'))
	deadline = time.monotonic() + 10
	while server(emulator, 'companies', victim) is not None:
		assert time.monotonic() < deadline, 'DELETE never went out'
		time.sleep(0.1)
	m.umount()
	m = mount_fs(emulator, cache_dir=cache, ttl=0)
	assert victim + '.json' not in os.listdir(m.p('companies'))
	for name in os.listdir(m.p('companies')):
		os.stat(m.p('companies', name))	# no listed name is missing


def _background(klipyfs, emulator, where, *extra):
	key = where / 'key'
	key.write_text('klipy_api_demo\n')
	key.chmod(0o600)
	return subprocess.run([klipyfs, '--base-url=' + emulator.url,
			       '--api-key-file=' + str(key),
			       '--cache-dir=' + str(where / 'cache')] +
			      list(extra), capture_output=True, text=True,
			      timeout=30)


def test_log_file_in_the_background(emulator, tmp_path):
	klipyfs = os.environ.get('KLIPYFS', os.path.join(
		os.path.dirname(__file__), '..', 'build', 'fs', 'klipyfs'))
	mnt = tmp_path / 'mnt'
	mnt.mkdir()
	log = tmp_path / 'klipyfs.log'
	res = _background(klipyfs, emulator, tmp_path, '--log-file=' +
			  str(log), str(mnt))
	assert res.returncode == 0, res.stderr
	try:
		assert is_mounted(str(mnt))
		rec = people(emulator)[0]
		path = mnt / 'people' / (rec['id'] + '.json')
		assert write_file(str(path), '{"email": "bad"}') == errno.EINVAL
		deadline = time.monotonic() + 5
		while 'cannot save' not in log.read_text():
			assert time.monotonic() < deadline, log.read_text()
			time.sleep(0.05)
		line = [x for x in log.read_text().splitlines()
			if 'cannot save' in x][0]
		assert rec['id'] in line and 'VALIDATION_ERROR' in line
		assert line[:4].isdigit() and 'Z klipyfs: ' in line
		assert os.stat(log).st_mode & 0o777 == 0o600
	finally:
		subprocess.run(['fusermount3', '-u', str(mnt)], check=True)
	assert 'klipy_api_demo' not in log.read_text()


def test_mount_point_of_a_killed_daemon_is_refused(emulator, mount_fs,
						    tmp_path):
	m = mount_fs(emulator)
	m.proc.kill()
	m.proc.wait()
	m.exit_unchecked = True	# ended on purpose
	try:
		with pytest.raises(OSError) as e:
			os.listdir(m.path)
		assert e.value.errno == errno.ENOTCONN
		klipyfs = m.argv[0]
		res = _background(klipyfs, emulator, tmp_path, m.path)
		assert res.returncode == 1
		assert 'fusermount3 -u' in res.stderr
		assert len(res.stderr.strip().splitlines()) == 1
	finally:
		subprocess.run(['fusermount3', '-u', m.path])
	assert not is_mounted(m.path)


def test_open_record_renamed_to_a_scratch_name_is_never_sent(emulator, mnt):
	rec, path = person(emulator, mnt)
	fd = os.open(path, os.O_RDWR)
	try:
		os.rename(path, path + '.bak')
		os.lseek(fd, 0, os.SEEK_SET)
		os.ftruncate(fd, 0)
		os.write(fd, b'{"remarks": "scratch only"}')
	finally:
		os.close(fd)
	assert read(path + '.bak') == '{"remarks": "scratch only"}'
	assert not os.path.exists(path)
	assert [r for r in settle(emulator) if r['method'] != 'GET'] == []
	assert server(emulator, 'people', rec['id']) == rec


def test_open_record_renamed_onto_another_record_is_eperm(emulator, mnt):
	(a, b) = people(emulator, 2)
	pa = mnt.p('people', a['id'] + '.json')
	pb = mnt.p('people', b['id'] + '.json')
	read(pa), read(pb)
	emulator.reset()
	fd = os.open(pa, os.O_RDWR)
	try:
		with pytest.raises(OSError) as e:
			os.rename(pa, pb)
		assert e.value.errno == errno.EPERM
	finally:
		os.close(fd)
	assert [r for r in settle(emulator) if r['method'] != 'GET'] == []
	assert read(pb) == text(b)


def test_a_command_run_by_the_writing_shell_does_not_save_half(emulator,
								mnt):
	"""A subshell opens the file and runs /bin/echo on the same
	descriptor: echo's close is not the end of the text."""
	rec, path = person(emulator, mnt)
	res = subprocess.run(['sh', '-c', '( printf \'{"title": \'; '
			      '/bin/echo \'"From Script"\'; printf "}\\n" ) '
			      '> "$1"', 'sh', path], capture_output=True,
			     text=True)
	assert res.returncode == 0, res.stderr
	assert res.stderr == ''
	expect(emulator, [('PATCH', '/people/' + rec['id'], {'title'})])
	assert server(emulator, 'people', rec['id'])['title'] == 'From Script'
	assert status_files(mnt, 'rejected') == []


def test_a_string_holding_u0000_is_refused_not_cut(emulator, mnt):
	rec, path = person(emulator, mnt)
	txt = read(path).replace('"id"', '"remarks": "before\\u0000after",\n'
				 '  "id"', 1)
	assert write_file(path, txt) == errno.EINVAL
	expect(emulator, [])
	assert server(emulator, 'people', rec['id']) == rec
	assert '\\u0000' in mnt.log()
