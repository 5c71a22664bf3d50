"""Drive real editors and tools non-interactively, the way a user saves.

Every helper runs the program with a timeout; on timeout the process we
started (and only it) is killed by PID and the helper raises.  Each helper
returns the CompletedProcess (or None for tmux-driven editors) so the caller
can check the exit status itself.
"""

import os
import shlex
import shutil
import subprocess
import time

EDITOR_TIMEOUT = 30


def run(argv, timeout=EDITOR_TIMEOUT, check=True, **kw):
	"""Run @argv with stdin closed; kill it by PID when it overstays."""
	kw.setdefault('stdin', subprocess.DEVNULL)
	kw.setdefault('capture_output', True)
	kw.setdefault('text', True)
	# subprocess.run kills the child it started (and only it) on timeout.
	res = subprocess.run(argv, timeout=timeout, **kw)
	if check and res.returncode != 0:
		raise AssertionError('%s exited %d\nstdout: %s\nstderr: %s' %
				     (argv, res.returncode, res.stdout,
				      res.stderr))
	return res


def vim_substitute(path, pattern, replacement, backupcopy=None,
		   timeout=EDITOR_TIMEOUT):
	"""
	Edit @path with vim in Ex mode, with swap files, backups and
	writebackup on (the defaults a user's vimrc usually keeps), run
	:%s/@pattern/@replacement/ and :wq.  @backupcopy is None (vim's own
	default, "auto"), "yes" or "no".
	"""
	# backupskip is emptied: its default skips backups under /tmp, where
	# test mounts live, and a user's real files are not there.
	opts = 'set swapfile backup writebackup backupskip='
	if backupcopy:
		opts += ' backupcopy=' + backupcopy
	sub = '%%s/%s/%s/' % (pattern.replace('/', r'\/'),
			      replacement.replace('/', r'\/'))
	cwd = os.path.dirname(path) or '.'
	return run(['vim', '-u', 'NONE', '-N', '-i', 'NONE', '-es',
		    '-c', opts, '-c', sub, '-c', 'wq', os.path.basename(path)],
		   timeout=timeout, cwd=cwd)


def _elisp_string(s):
	return '"' + s.replace('\\', '\\\\').replace('"', '\\"') + '"'


def emacs_substitute(path, regexp, replacement, timeout=EDITOR_TIMEOUT):
	"""
	Open @path in emacs --batch, replace the first match of the Emacs
	@regexp by @replacement (literally) and save-buffer.  Backups stay on
	with emacs's default backup-by-rename; the backup predicate is forced
	true (and backup-inhibited, which visiting the file already set from
	it, cleared) because emacs skips backups of files under
	temporary-file-directory (/tmp), where test mounts usually live.  The first save of a buffer is
	the one that makes the backup, so this save makes one.
	"""
	form = ('(progn'
		' (setq make-backup-files t backup-by-copying nil'
		'  backup-by-copying-when-linked nil'
		'  backup-by-copying-when-mismatch nil'
		'  backup-enable-predicate (lambda (name) t))'
		' (setq backup-inhibited nil)'
		' (goto-char (point-min))'
		' (re-search-forward %s)'
		' (replace-match %s t t)'
		' (save-buffer)'
		' (kill-emacs 0))' % (_elisp_string(regexp),
				      _elisp_string(replacement)))
	return run(['emacs', '--batch', '-Q', path, '--eval', form],
		   timeout=timeout)


class Tmux:
	"""A private tmux server (own socket) running one program."""

	def __init__(self, sockdir, cmd, width=200, height=50):
		self.sock = os.path.join(sockdir, 'tmux.sock')
		self.cmd = cmd
		subprocess.run(['tmux', '-S', self.sock, 'new-session', '-d',
				'-x', str(width), '-y', str(height), cmd],
			       check=True, timeout=10)

	def keys(self, *keys, literal=False):
		argv = ['tmux', '-S', self.sock, 'send-keys']
		if literal:
			argv.append('-l')
		subprocess.run(argv + list(keys), check=True, timeout=10)

	def screen(self):
		res = subprocess.run(['tmux', '-S', self.sock, 'capture-pane',
				      '-p'], capture_output=True, text=True,
				     timeout=10)
		return res.stdout

	def wait_screen(self, text, timeout=10):
		deadline = time.monotonic() + timeout
		while time.monotonic() < deadline:
			if text in self.screen():
				return
			time.sleep(0.05)
		raise AssertionError('%r never showed on screen:\n%s' %
				     (text, self.screen()))

	def alive(self):
		res = subprocess.run(['tmux', '-S', self.sock, 'has-session'],
				     capture_output=True, timeout=10)
		return res.returncode == 0

	def wait_exit(self, timeout=10):
		deadline = time.monotonic() + timeout
		while time.monotonic() < deadline:
			if not self.alive():
				return True
			time.sleep(0.05)
		return False

	def kill(self):
		# Only the server on our own socket: it and its children are ours.
		subprocess.run(['tmux', '-S', self.sock, 'kill-server'],
			       capture_output=True, timeout=10)


def nano_start(sockdir, path):
	"""Start nano (no rc files, no backups) on @path inside a private tmux."""
	cmd = 'nano --ignorercfiles %s' % shlex.quote(path)
	t = Tmux(sockdir, cmd)
	t.wait_screen('GNU nano')
	return t


def nano_replace(t, old, new):
	"""^\\ search-and-replace the first @old by @new (both literal)."""
	t.keys('C-\\')
	t.wait_screen('Search (to replace)')
	t.keys(old, literal=True)
	t.keys('Enter')
	t.wait_screen('Replace with')
	t.keys(new, literal=True)
	t.keys('Enter')
	t.wait_screen('Replace this instance?')
	t.keys('y')


def nano_write(t):
	"""^O and accept the proposed file name."""
	t.keys('C-o')
	t.wait_screen('File Name to Write')
	t.keys('Enter')


def nano_quit(t):
	t.keys('C-x')


def have(prog):
	return shutil.which(prog) is not None
