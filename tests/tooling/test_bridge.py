"""The kernel bridge on its own: what a block may not put in the notes,
a kernel that dies, and a bridge whose Emacs is gone."""

import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, Bridge, alive, gone, wait_for
import kernel_supervisor
from tiny_notes import CHILD

# Its tests share fixtures made once for the module: one worker runs them all.
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def kernel():
    import kernel_bridge
    kernel = kernel_bridge.Kernel()
    yield kernel
    kernel.kill()


BAD_OUTPUT = {
    "too long": ("print('\\n'.join(map(str, range(2000))))", "output",
                 "produced 2000 lines, more than the 1000"),
    "SystemExit": ("raise SystemExit(2)", "raised", "SystemExit: 2 (the block called"),
    # Org text that would close the results drawer and become notes text.
    "Org out of its drawer": (
        "class O:\n    def _repr_mimebundle_(self, include=None, exclude=None):\n"
        "        return {'text/plain': 'O', 'text/org': '| 1 |\\n:end:\\n* Heading'}\nO()",
        "output", "returned Org text whose line 2, ':end:'"),
}


@pytest.mark.parametrize("case", BAD_OUTPUT, ids=list(BAD_OUTPUT))
def test_what_cannot_go_into_the_notes_fails_the_block(kernel, case):
    """The bridge's side; the build names the block as for any failure."""
    import kernel_bridge
    code, kind, what = BAD_OUTPUT[case]
    with pytest.raises(kernel_bridge.BlockError) as failure:
        kernel_bridge.execute(kernel, code, max_lines=1000)
    assert failure.value.kind == kind and what in str(failure.value)
    assert "%tb" not in str(failure.value)


# Found by probing: 300 million characters printed kept the bridge
# reading them, silent, until Emacs killed it as stuck, blaming the
# kernel; printing without end ran until the block's time limit.
@pytest.mark.parametrize("code", ["while True:\n    print('y' * 1000)",
                                  "import sys\nfor i in range(10**9):\n"
                                  "    sys.stderr.write(f'{i:>9999}\\n')"],
                         ids=["printed", "error output"])
def test_printing_far_more_than_the_notes_hold_stops_the_block(kernel, code):
    import kernel_bridge
    started = time.monotonic()
    with pytest.raises(kernel_bridge.BlockError) as failure:
        kernel_bridge.execute(kernel, f"stays = 1\n{code}", timeout=600, max_lines=1000)
    assert failure.value.kind == "output"
    assert str(failure.value).startswith("printed more than 20,000,000 characters, and was "
                                         "interrupted"), str(failure.value)
    # Interrupted, not killed: the kernel keeps its variables.
    assert kernel_bridge.execute(kernel, "stays")[0] == ": 1"
    assert time.monotonic() - started < 300


def test_a_block_printing_on_past_its_interrupt_is_killed_saying_why():
    """Found by review: the bridge dropped what it printed, in silence,
    until the block ended, or its time limit blamed the time."""
    import kernel_bridge
    kernel = kernel_bridge.Kernel()
    try:
        with pytest.raises(kernel_bridge.KernelDied) as died:
            kernel_bridge.execute(kernel, "while True:\n    try:\n        print('y' * 1000)\n"
                                          "    except KeyboardInterrupt:\n        pass",
                                  max_lines=1000)
        assert str(died.value).startswith("it printed more than 20,000,000 characters and did "
                                          "not stop when interrupted, so the kernel was killed")
    finally:
        kernel.kill()


# Found by a CI run on a loaded machine: ipykernel ignores SIGINT until it
# has begun a block, and a SIGINT sent before then was lost; the block
# ran to its end, 30 s, and the blocks after it waited.
def test_an_interrupt_asked_before_the_kernel_begins_the_block_stops_it(tmp_path):
    bridge = Bridge(tmp_path)
    try:
        bridge.ready()
        bridge.send("kept = 1", id=1)
        assert bridge.reply()["ok"]
        # Asked before the bridge has read the request, and just after.
        bridge.interrupt(2)
        bridge.send("import time\ntime.sleep(20)", id=2)
        bridge.send("import time\ntime.sleep(20)", id=3)
        bridge.interrupt(3)
        # Lost, an interrupt let its block run to its end: a result, not
        # KeyboardInterrupt.  Late, it ended the block as its sleep did,
        # in 2 of 8 loaded CI runs, before WAKE_SIGNAL (see the next test).
        started = time.monotonic()
        replies = [bridge.reply() for _ in range(2)]
        assert [(reply["id"], reply["kind"]) for reply in replies] == \
            [(2, "interrupted"), (3, "interrupted")], replies
        assert time.monotonic() - started < 15, "an interrupt landed as its block's sleep ended"
        # One asked after its request ended touches no other.
        bridge.interrupt(1)
        bridge.send("time.sleep(1)\nkept + 1", id=4)
        reply = bridge.reply()
        assert (reply["id"], reply["ok"], reply["org"]) == (4, True, ": 2"), reply
        # Each ask is one interrupt, as each SIGINT was: found by probing,
        # a second ask for a block that caught the first did nothing.
        # Asked once the block is in its try: asked as it was sent, the
        # interrupt may land before, as a loaded CI run found.
        bridge.send("try:\n    open('trying', 'w').close()\n    time.sleep(20)\n"
                    "except KeyboardInterrupt:\n"
                    "    open('caught', 'w').close()\n    time.sleep(20)", id=5)
        assert wait_for(lambda: (tmp_path / "trying").exists(), 30)
        bridge.interrupt(5)
        assert wait_for(lambda: (tmp_path / "caught").exists(), 15)
        started = time.monotonic()
        bridge.interrupt(5)
        reply = bridge.reply()
        assert (reply["id"], reply["kind"]) == (5, "interrupted"), reply
        assert time.monotonic() - started < 15
    finally:
        bridge.kill()


def interrupted(bridge, folder, code, sign, id=1, asks=1):
    """The reply to CODE (request ID, with a time limit in case the
    interrupt is lost), interrupted ASKS times at once once it made the
    file SIGN in FOLDER."""
    (folder / sign).unlink(missing_ok=True)
    bridge.send(code, id=id, timeout=15)
    assert wait_for(lambda: (folder / sign).exists(), 30), f"{sign} never came"
    for _ in range(asks):
        bridge.interrupt(id)
    return bridge.reply()


# What left an interrupt late: the SIGINT landed just before the block's
# time.sleep() began its wait, so Python noted it but did not break the wait
# off.  Here, for sure: the main thread holds SIGINT off (the bridge's stays
# pending), and another thread takes one, which Python notes for the main
# thread to raise, once it runs again.
NOTED_DURING_A_WAIT = """import signal, threading, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
def note_an_interrupt():
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    time.sleep(1)
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)
    open('noted', 'w').close()
threading.Thread(target=note_an_interrupt).start()
try:
    time.sleep(60)
finally:
    held = signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, held)"""


def test_an_interrupt_noted_during_a_wait_ends_the_wait(tmp_path):
    bridge = Bridge(tmp_path)
    try:
        bridge.ready()
        reply = interrupted(bridge, tmp_path, NOTED_DURING_A_WAIT, "noted")
        assert (reply["id"], reply["kind"]) == (1, "interrupted"), reply
        # The kernel goes on with the next block, its variables kept.
        bridge.send("'next'", id=2)
        reply = bridge.reply()
        assert (reply["id"], reply["ok"], reply["org"]) == (2, True, ": 'next'"), reply
        # An interrupt after one the kernel took before is woken for too:
        # the kernel's count is of its life, not of one block.
        started = time.monotonic()
        reply = interrupted(bridge, tmp_path, NOTED_DURING_A_WAIT, "noted", id=3)
        assert (reply["id"], reply["kind"]) == (3, "interrupted"), reply
        assert time.monotonic() - started < 10, "the second interrupt was not woken for"
    finally:
        bridge.kill()


# Found by probing: woken every two seconds until it ended, a block that
# caught its interrupt had each of its waits broken off, and some do not
# come back whole: pyzmq's recv starts its timeout again, so that one
# over two seconds never ran out, and a write to a slow reader returned
# having written part.  And again, with two interrupts asked at once:
# they went as one SIGINT, and the bridge waited for two KeyboardInterrupts.
@pytest.mark.parametrize("asks", [1, 2], ids=["one interrupt", "two asked at once"])
def test_a_block_that_caught_its_interrupt_is_not_woken_after(tmp_path, asks):
    bridge = Bridge(tmp_path)
    try:
        bridge.ready()
        reply = interrupted(bridge, tmp_path, "import signal, time, zmq\nwoken = 0\n"
                    "def count(signum, frame):\n    global woken\n    woken += 1\n"
                    "try:\n    open('sleeping', 'w').close()\n    time.sleep(20)\n"
                    "except KeyboardInterrupt:\n"
                    "    signal.signal(signal.SIGRTMIN + 4, count)\n"
                    "    socket = zmq.Context().socket(zmq.PULL)\n"
                    "    socket.bind('inproc://nobody')\n    socket.RCVTIMEO = 3000\n"
                    "    try:\n        socket.recv()\n    except zmq.Again:\n"
                    "        pass\n"
                    "woken", "sleeping", asks=asks)
        assert (reply["id"], reply["ok"], reply["org"]) == (1, True, ": 0"), reply
    finally:
        bridge.kill()


def test_a_block_that_ends_the_process_on_the_wake_signal_is_not_sent_it(tmp_path):
    """Found by probing: a block that sets the wake signal back to the
    default, which ends a process, and catches SIGINT in a handler of its
    own (so that its interrupt counts as not taken), lost its kernel."""
    bridge = Bridge(tmp_path)
    try:
        bridge.ready()
        reply = interrupted(bridge, tmp_path, "import signal, time\n"
                    "signal.signal(signal.SIGRTMIN + 4, signal.SIG_DFL)\n"
                    "asked = []\nsignal.signal(signal.SIGINT, lambda *_: asked.append(1))\n"
                    "open('waiting', 'w').close()\n"
                    "while not asked:\n    time.sleep(0.1)\n"
                    "time.sleep(2)\n'lived'", "waiting")
        assert (reply["id"], reply["ok"], reply["org"]) == (1, True, ": 'lived'"), reply
    finally:
        bridge.kill()


def test_an_interrupt_reaches_the_kernel_and_the_processes_of_its_group(tmp_path):
    """As Jupyter's SIGINT to the kernel's process group: the kernel's
    main thread has it (sent to the process, another thread might, and a
    block waiting in time.sleep() went on), and so does a command the
    block started."""
    bridge = Bridge(tmp_path)
    try:
        bridge.ready()
        bridge.send("import subprocess, time\nchild = subprocess.Popen(['sleep', '60'])\n"
                    "open('child', 'w').write(str(child.pid))\ntime.sleep(20)", id=1)
        assert wait_for(lambda: (tmp_path / "child").exists() and (tmp_path / "child").read_text())
        started = time.monotonic()
        bridge.interrupt(1)
        reply = bridge.reply()
        assert reply["kind"] == "interrupted", reply
        assert time.monotonic() - started < 10
        # The traceback ends at the block's line, as with Python's own
        # handler of SIGINT, not in the kernel's, which counts it.
        assert reply["error"].rstrip().endswith("time.sleep(20)\n\nKeyboardInterrupt:"), reply
        child = int((tmp_path / "child").read_text())
        assert wait_for(lambda: not alive(child) or
                        kernel_supervisor.process_status(child)[0] == b"Z"), "the command ran on"
    finally:
        bridge.kill()


def test_a_time_limit_that_ends_before_the_block_begins_interrupts_it(kernel):
    """The interrupt waits for the block; lost, it was followed by a kill
    that took the kernel's variables."""
    import kernel_bridge
    kernel_bridge.execute(kernel, "kept_through_the_limit = 1")
    with pytest.raises(kernel_bridge.BlockError) as failure:
        kernel_bridge.execute(kernel, "import time\ntime.sleep(20)", timeout=0.001)
    assert failure.value.kind == "timeout" and not failure.value.killed, str(failure.value)
    assert kernel_bridge.execute(kernel, "kept_through_the_limit")[0] == ": 1"


# Found by a CI run on a loaded machine: the grace an interrupted block
# gets counted from its time limit, and a block the kernel began late
# was killed, with the kernel's variables, as one that ignored the
# interrupt.  Here the kernel begins it late because of a thread an
# earlier block left, which holds Python's lock for 7 s.
def test_a_block_begun_after_its_time_limit_gets_the_whole_grace():
    import kernel_bridge
    kernel = kernel_bridge.Kernel()
    try:
        kernel_bridge.execute(kernel, "import sys, threading, time\nkept = 1\n"
                                      "def hold():\n    time.sleep(1)\n"
                                      "    end = time.monotonic() + 7\n"
                                      "    while time.monotonic() < end:\n        pass\n"
                                      "sys.setswitchinterval(8)\n"
                                      "threading.Thread(target=hold).start()")
        time.sleep(2)
        started = time.monotonic()
        with pytest.raises(kernel_bridge.BlockError) as failure:
            kernel_bridge.execute(kernel, "time.sleep(20)", timeout=0.5)
        assert time.monotonic() - started > kernel_bridge.INTERRUPT_GRACE
        assert failure.value.kind == "timeout" and not failure.value.killed, str(failure.value)
        assert kernel_bridge.execute(kernel, "sys.setswitchinterval(0.005)\nkept")[0] == ": 1"
    finally:
        kernel.kill()


# Found by probing: a block that left sys.stdout None ran; IPython then
# failed in every later block before its code, and ipykernel sent no
# reply: the bridge waited 60 s, then blamed the next block for a kernel
# that did not answer.  So with any failure in ipykernel's own handling of
# a block (a KeyboardInterrupt that lands there is one).
BREAKS_THE_KERNEL = {
    "stdout None": ("import sys\nsys.stdout = None", None,
                    "it left sys.stdout or sys.stderr with no write() (set to None?)"),
    "stderr None, then raised": ("import sys\nsys.stderr = None\nraise ValueError",
                                 None, "it raised AttributeError: 'NoneType' object has no "
                                 "attribute 'flush' and left the kernel unable to run another "
                                 "block (AttributeError: "),
    "KeyboardInterrupt outside the code": (
        "def interrupts(lines):\n    raise KeyboardInterrupt\n"
        "get_ipython().input_transformers_cleanup.append(interrupts)",
        "next = 1", "the kernel failed to run it ([IPKernelApp] ERROR | KeyboardInterrupt"),
}


@pytest.mark.parametrize("case", BREAKS_THE_KERNEL, ids=list(BREAKS_THE_KERNEL))
def test_a_block_that_leaves_the_kernel_unable_to_run_blocks_is_said_at_once(case):
    import kernel_bridge
    code, then, said = BREAKS_THE_KERNEL[case]
    kernel = kernel_bridge.Kernel()
    try:
        started = time.monotonic()
        with pytest.raises(kernel_bridge.KernelDied) as died:
            for each in (code, then):
                try:
                    kernel_bridge.execute(kernel, each)
                except kernel_bridge.KernelDied:
                    raise
                except kernel_bridge.BlockError:
                    pass
        assert time.monotonic() - started < 30
        assert str(died.value).startswith(said), str(died.value)
        assert not kernel.is_alive()
    finally:
        kernel.kill()


def test_the_folders_of_the_clone_and_of_python_are_named_as_they_stay(kernel):
    """A library's warning names its file, and a block may print a path of
    the notes: a drawer holding the clone's or the machine's folders would
    publish them, and fail `make test` in any other clone."""
    import kernel_bridge
    org, _ = kernel_bridge.execute(kernel, "import os, numpy, site\nnumpy.mean([])\n"
                                           "print(os.path.abspath('data.csv'))\n"
                                           "print(os.getcwd(), os.__file__)\n"
                                           "print(f'Saved into {os.getcwd()}.', site.getsitepackages())\n"
                                           "print('https://example.org' + os.getcwd() + '/page')")
    lines = org.splitlines()
    assert ": Saved into <notes>. ['<site-packages>']" in lines, org
    assert f": https://example.org{os.getcwd()}/page" in lines, org
    assert any(line.startswith(": <site-packages>/numpy/") and "RuntimeWarning: Mean of empty"
               in line for line in lines), org
    assert ": data.csv" in lines and ": <notes> <stdlib>/os.py" in lines, org
    assert os.getcwd() + "/" not in org.replace("https://example.org" + os.getcwd(), "")
    assert sys.prefix not in org, org


def test_a_traceback_names_the_lines_of_the_notes(kernel):
    """Found by probing: a failure named IPython's cells ("Cell In[3],
    line 2", a SyntaxError's "(1886342180.py, line 2)"), counted from a
    block's first line, where the notes have lines of their own."""
    import kernel_bridge
    kernel_bridge.execute(kernel, "def fails():\n    return 1 / 0", notes={"file": "N.org", "line": 10})
    with pytest.raises(kernel_bridge.BlockError) as raised:
        kernel_bridge.execute(kernel, "x = 1\nfails()", notes={"file": "N.org", "line": 20})
    assert "N.org:21" in str(raised.value) and "N.org:11, in fails()" in str(raised.value), \
        str(raised.value)
    assert "Cell In[" not in str(raised.value)
    with pytest.raises(kernel_bridge.BlockError) as raised:
        kernel_bridge.execute(kernel, "x = 1\ny = = 2", notes={"file": "N.org", "line": 30})
    assert raised.value.summary == "SyntaxError: invalid syntax (N.org:31)", raised.value.summary
    # Code whose place is not known (a noweb reference expanded) keeps
    # IPython's own names.
    with pytest.raises(kernel_bridge.BlockError) as raised:
        kernel_bridge.execute(kernel, "fails()")
    assert "N.org:11, in fails()" in str(raised.value) and "Cell In[" in str(raised.value)


def test_a_memory_address_is_refused_with_the_way_out_that_fits(kernel):
    """Found by probing: a printed address was told to end the block with
    `;', which silences a value, not a print."""
    import kernel_bridge
    for code, way_out in (("print(object())", "print what the object holds"),
                          ("object()", "end the block with `;' to show no value"),
                          # Found by probing: one in capitals got through.
                          ("print(repr(object()).upper())", "print what the object holds")):
        with pytest.raises(kernel_bridge.BlockError, match="reads as a memory address") as refused:
            kernel_bridge.execute(kernel, code, for_the_notes=True)
        assert way_out in str(refused.value), str(refused.value)


def test_a_block_tangled_into_a_script_may_display_only_pictures(kernel, tmp_path):
    """The script, run on its own, has no display(), and prints IPython's
    objects as their class: the notes would record what it never shows.
    A picture is the build's to draw."""
    import kernel_bridge
    for code in ("display(42)", "from IPython.display import Markdown\ndisplay(Markdown('*x*'))"):
        with pytest.raises(kernel_bridge.BlockError, match="is tangled into gradients.py and "
                           "displayed .*text/plain, which gradients.py, run on its own, would "
                           "not show"):
            kernel_bridge.execute(kernel, code, for_the_notes=True, tangled="gradients.py")
        org, _ = kernel_bridge.execute(kernel, code, for_the_notes=True)
        assert org.strip(), code
    picture = tmp_path / "p.png"
    org, _ = kernel_bridge.execute(
        kernel, "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()",
        file="images/p.png", write_to=str(picture), for_the_notes=True, tangled="gradients.py")
    assert org == "[[file:images/p.png]]" and picture.exists()


def test_a_block_tangled_into_a_script_may_leave_nothing_running(kernel):
    """Imported by `make test', gradients.py ran such a block in pytest's
    own process: a thread kept pytest from ending, a process was left
    behind, where the build's kernel stopped both."""
    import kernel_bridge
    # Each left as it was, then ended by a block not tangled, which may.
    for code, what, end in [
            ("import subprocess\np = subprocess.Popen(['sleep', '31'], start_new_session=True)",
             "leaves a process running when it ends (", "p.kill(); p.wait();"),
            ("import threading, time\nt = threading.Thread(target=time.sleep, args=(1,))\n"
             "t.start()", "leaves a thread running when it ends (Thread-", "t.join()"),
            # Found by probing: a fork of the kernel, a daemon its supervisor
            # adopted, a multiprocessing child Python waits for at exit, an
            # executor's worker still at its work.
            ("import os\nforked = os.fork()\nif forked == 0:\n    time.sleep(31)\n"
             "    os._exit(0)", "leaves a process running when it ends (",
             "os.kill(forked, 9); os.waitpid(forked, 0);"),
            ("daemon = int(subprocess.run('sleep 31 >/dev/null 2>&1 & echo $!', shell=True,\n"
             "    capture_output=True, text=True).stdout)",
             "leaves a process running when it ends (", "os.kill(daemon, 9)"),
            ("import multiprocessing\nchild = multiprocessing.Process(target=time.sleep, "
             "args=(31,))\nchild.start()", "leaves a process running when it ends (",
             "child.terminate(); child.join()"),
            ("from concurrent.futures import ThreadPoolExecutor\nbusy = ThreadPoolExecutor(1)\n"
             "busy.submit(time.sleep, 2);", "leaves a thread running when it ends "
             "(ThreadPoolExecutor-", "busy.shutdown(wait=True)"),
            # A C function as its target (no module) turned the check off.
            ("import queue\ninbox = queue.SimpleQueue()\n"
             "waiting = threading.Thread(target=inbox.get)\nwaiting.start()",
             "leaves a thread running when it ends (Thread-", "inbox.put(1); waiting.join()"),
    ]:
        with pytest.raises(kernel_bridge.BlockError, match=re.escape(what)):
            kernel_bridge.execute(kernel, code, for_the_notes=True, tangled="gradients.py")
        kernel_bridge.execute(kernel, end, for_the_notes=True)
    # What ends in its block, or is a daemon, may be tangled; so may the
    # workers of an executor or of multiprocessing, which Python stops at
    # exit.  What a block not tangled left running is not the next one's.
    kernel_bridge.execute(kernel, "t2 = threading.Thread(target=time.sleep, args=(30,), "
                                  "daemon=True)\nt2.start()\nsubprocess.run(['true'])\n"
                                  "q = subprocess.Popen(['true'])\nq.wait();",
                          for_the_notes=True, tangled="gradients.py")
    kernel_bridge.execute(kernel, "from concurrent.futures import ThreadPoolExecutor\n"
                                  "import multiprocessing\nex = ThreadPoolExecutor(2)\n"
                                  "print(list(ex.map(abs, [-1, 2])))\n"
                                  "pool = multiprocessing.Pool(2)\nprint(pool.map(abs, [-1, 2]))",
                          for_the_notes=True, tangled="gradients.py")
    # Found by probing: a child killed but not yet waited for, an idle
    # process pool's manager thread.
    kernel_bridge.execute(kernel, "killed = subprocess.Popen(['sleep', '31'])\nkilled.kill()",
                          for_the_notes=True, tangled="gradients.py")
    kernel_bridge.execute(kernel, "from concurrent.futures import ProcessPoolExecutor\n"
                                  "processes = ProcessPoolExecutor(2)\n"
                                  "print(list(processes.map(abs, [-1, -2])))",
                          for_the_notes=True, tangled="gradients.py")
    kernel_bridge.execute(kernel, "killed.wait(); processes.shutdown()", for_the_notes=True)
    kernel_bridge.execute(kernel, "t3 = threading.Thread(target=time.sleep, args=(1,))\n"
                                  "t3.start()", for_the_notes=True)
    kernel_bridge.execute(kernel, "x = 1", for_the_notes=True, tangled="gradients.py")
    kernel_bridge.execute(kernel, "pool.terminate(); t3.join()", for_the_notes=True)


def test_the_kernel_keeps_no_history_in_the_users_home(kernel):
    """Every block of every build would go into ~/.ipython's database."""
    import kernel_bridge
    org, _ = kernel_bridge.execute(kernel, "get_ipython().history_manager.enabled")
    assert org == ": False"


def test_a_block_that_reads_standard_input_reads_its_end_at_once(kernel):
    """Not a pipe kept open and never written, on which the block, and
    every block queued behind it, would wait for ever."""
    import kernel_bridge
    org, _ = kernel_bridge.execute(kernel, "import os\nos.readlink('/proc/self/fd/0')")
    assert org == ": '/dev/null'"
    org, _ = kernel_bridge.execute(
        kernel, "import subprocess, sys\n"
        "sys.stdin.read(), subprocess.run(['cat'], capture_output=True).stdout")
    assert org == ": ('', b'')"


def test_a_block_sees_the_kernel_that_python_m_ipykernel_launcher_starts(kernel):
    """The bridge starts its kernels without debugpy, and in every other way
    as Jupyter does: the launcher is the script (what argparse names in a
    usage message), the notes' folder ('', so it follows os.chdir) comes
    after the standard library, and a block may still import debugpy."""
    import kernel_bridge
    org, _ = kernel_bridge.execute(kernel, "\n".join([
        "import argparse, os, sys",
        "print('debugpy' in sys.modules, argparse.ArgumentParser().prog)",
        "print(sys.path.index('') > sys.path.index(os.path.dirname(os.__file__)))",
        "import debugpy",
        "print(debugpy.__name__)"]))
    assert org == ": False ipykernel_launcher.py\n: True\n: debugpy"


# Found by probing: a lone surrogate that stands for no byte (\\ud800)
# made ipykernel fail to send the output, which was lost, the block's
# print recorded as ipykernel's own traceback, or its exception as
# success; one that stands for a byte ended the bridge, which read it
# back as UTF-8.  As for the script on its own, printing the first is an
# error of the block, raising it shows the exception with it escaped, and
# the second is text the notes refuse by name.
SURROGATES = {
    "printed, no byte": ("print('ok'); print('b\\ud800'); print('after')", "raised",
                         "UnicodeEncodeError: 'utf-8' codec can't encode character '\\ud800'"),
    # The block's own exception, escaped as Python shows it on its own
    # (it was ipykernel's UnicodeEncodeError, sending it).
    "raised, no byte": ("x = 1\nraise ValueError('bad\\ud800')", "raised",
                        "ValueError: bad\\ud800"),
    "printed, a byte": ("print('x\\udcff')", "output", "printed '\\udcff', which is not valid"),
    "a repr, a byte": ("class R:\n    def __repr__(self):\n        return 'r\\udc80'\nR()",
                       "output", "printed '\\udc80', which is not valid"),
    "raised, a byte": ("raise ValueError('b\\udc80')", "raised", "ValueError: b\\udc80"),
}


@pytest.mark.parametrize("case", SURROGATES, ids=list(SURROGATES))
def test_a_lone_surrogate_fails_its_block_by_name_and_the_kernel_goes_on(kernel, case):
    import kernel_bridge
    code, kind, what = SURROGATES[case]
    with pytest.raises(kernel_bridge.BlockError) as failure:
        kernel_bridge.execute(kernel, code, max_lines=1000)
    assert failure.value.kind == kind
    assert failure.value.summary.startswith(what), failure.value.summary
    # The traceback shows why, by the line that failed, not "Could not
    # get source".
    if case == "printed, no byte":
        assert kernel_bridge.STREAMS_FILE in str(failure.value), str(failure.value)
        assert "fails\n" in str(failure.value) and "Could not get source" not in str(failure.value)
    assert kernel_bridge.execute(kernel, "print('next')")[0] == ": next"


# Found by probing: ipykernel's thread moved what lands on file descriptor
# 1 into the output whenever it woke, so that a print() after it came
# before it or into its middle, or the block ended without it; and it
# decoded each read apart, breaking a character split between two.
IN_ORDER = [
    ("import os\nos.write(1, b''.join(b'%d\\n' % i for i in range(500)))\nprint('end')\nNone",
     [f": {i}" for i in range(500)] + [": end"]),
    ("import os, subprocess\nfor i in range(3):\n"
     "    print(i); os.write(1, b'fd\\n'); subprocess.run(['echo', 'sub'])\n"
     "os.system('printf x')",
     [": 0", ": fd", ": sub", ": 1", ": fd", ": sub", ": 2", ": fd", ": sub", ": x", ": 0"]),
    ("import os\ntext = 'é€'.encode()\nos.write(1, text[:3]); os.write(1, text[3:] + b'\\n')\nNone",
     [": é€"]),
]


@pytest.mark.parametrize("code, lines", IN_ORDER, ids=["long", "mixed", "split"])
def test_what_lands_on_file_descriptor_1_comes_in_the_order_it_was_written(kernel, code,
                                                                          lines):
    import kernel_bridge
    for _ in range(5):
        assert kernel_bridge.execute(kernel, code, max_lines=1000)[0].split("\n") == lines


# Found by probing: the drawer held every step a block cleared or updated,
# where Jupyter shows the last, and a loop that cleared each epoch's line
# was refused for its thousand lines.
AS_JUPYTER_SHOWS = {
    "cleared": ("from IPython.display import clear_output\nprint('gone')\nclear_output()\n"
                "print('kept')", ": kept"),
    "cleared at the next output": (
        "from IPython.display import clear_output\nfor i in range(1200):\n"
        "    clear_output(wait=True)\n    print(f'epoch {i}')", ": epoch 1199"),
    "cleared, nothing after": ("from IPython.display import clear_output\nprint('stays')\n"
                               "clear_output(wait=True)", ": stays"),
    "updated": ("from IPython.display import display\nh = display('step 0', display_id=True)\n"
                "print('between')\nfor i in range(1, 4):\n    h.update(f'step {i}')",
                ": 'step 3'\n: between"),
}


@pytest.mark.parametrize("case", AS_JUPYTER_SHOWS, ids=list(AS_JUPYTER_SHOWS))
def test_the_drawer_shows_what_jupyter_shows_once_the_block_is_done(kernel, case):
    import kernel_bridge
    code, org = AS_JUPYTER_SHOWS[case]
    assert kernel_bridge.execute(kernel, code + "\nNone")[0] == org


def test_a_bridge_that_falls_behind_the_kernel_loses_no_message(kernel, monkeypatch):
    """Found by a hung test run under load: past ZeroMQ's high-water mark
    (1000 messages), IOPub dropped what the bridge had not read yet, the
    block's end among them, and the bridge waited for ever."""
    import kernel_bridge
    receive = kernel.channels.receive
    held = []

    def behind(socket, timeout):
        if not held:
            held.append(True)
            time.sleep(4)
        return receive(socket, timeout)

    monkeypatch.setattr(kernel.channels, "receive", behind)
    code = ("from IPython.display import clear_output\nfor i in range(3000):\n"
            "    clear_output(wait=True)\n    print(f'epoch {i}')\nNone")
    assert kernel_bridge.execute(kernel, code, timeout=60)[0] == ": epoch 2999"


@pytest.mark.parametrize("descriptor", [1, 2])
def test_a_character_a_block_leaves_unfinished_ends_with_the_block(kernel, descriptor):
    """Found by probing: its first byte came out in the next block's
    output, where gradients.py, run on its own, printed it in this one."""
    import kernel_bridge
    written = f"import os\nos.write({descriptor}, b'abc\\xc3')\nNone"
    assert kernel_bridge.execute(kernel, written)[0] == ": abc\ufffd"
    assert kernel_bridge.execute(kernel, f"os.write({descriptor}, b'def\\n')\nNone")[0] == ": def"
    # Found by probing: text printed after the bytes went ahead of them.
    stream = "sys.stdout" if descriptor == 1 else "sys.stderr"
    broken = f"import sys\nos.write({descriptor}, b'sub \\xf0\\x9f')\nprint('then', file={stream})\nNone"
    assert kernel_bridge.execute(kernel, broken)[0] == ": sub \ufffdthen"


# Found by probing: what landed on file descriptor 2 went into the error
# stream apart, so that a subprocess's error after a print was sent before
# it, as the block printed again; and a print() moved ahead of what the
# block had written to the other descriptor, or into its line.  (What one
# program writes to both descriptors at once is read as the two pipes
# hold it, which keeps no order between them.)
BOTH_STREAMS = {
    "a subprocess's error": ("import subprocess\nprint('one')\n"
                             "subprocess.run('echo two >&2', shell=True)\nprint('three')",
                             [": one", ": two", ": three"]),
    "descriptor 2, then print": ("import os\nos.write(2, b'fd 2\\n')\nprint('printed')",
                                 [": fd 2", ": printed"]),
    "descriptor 1, then stderr": ("import os, sys\nos.write(1, b'a')\n"
                                  "print('b', file=sys.stderr)",
                                  [": ab"]),
    "descriptor 2, then both streams": (
        "import os, sys\nos.write(2, b'fd 2\\n')\n"
        "print('stderr', file=sys.stderr); print('stdout')",
        [": fd 2", ": stderr", ": stdout"]),
    "stderr, then descriptor 1": ("import os, sys\nsys.stderr.write('e\\n')\n"
                                  "os.write(1, b'o\\n')\nprint('p')",
                                  [": e", ": o", ": p"]),
}


@pytest.mark.parametrize("case", BOTH_STREAMS, ids=list(BOTH_STREAMS))
def test_what_a_block_writes_to_both_streams_comes_in_the_order_it_was_written(kernel, case):
    import kernel_bridge
    code, lines = BOTH_STREAMS[case]
    for _ in range(5):
        assert kernel_bridge.execute(kernel, code + "\nNone")[0].split("\n") == lines


# Found by probing: `make run' dropped the picture of a block without a
# :file without a word, and recorded a default repr whose address
# changed on every run, which only `make test' noticed.
UNREPEATABLE = {
    "picture": ("import matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()",
                "displayed a picture but has no :file"),
    "pictures": ("import matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()\n"
                 "plt.plot([2, 1]); plt.show()", "displayed 2 pictures but has no :file"),
    "repr": ("class H:\n    def _repr_html_(self):\n        return '<p>x</p>'\nH()",
             "shows 0x"),
    "printed": ("print(object())", "shows 0x"),
}


@pytest.mark.parametrize("case", UNREPEATABLE, ids=list(UNREPEATABLE))
def test_what_the_notes_could_not_keep_fails_a_block_the_build_records(kernel, case):
    import kernel_bridge
    code, what = UNREPEATABLE[case]
    with pytest.raises(kernel_bridge.BlockError) as failure:
        kernel_bridge.execute(kernel, code, for_the_notes=True)
    assert failure.value.kind == "output" and str(failure.value).startswith(what)
    # C-c C-c shows it as it is.
    kernel_bridge.execute(kernel, code)


def test_a_kernel_killed_by_its_block_is_reported_as_died(kernel):
    """The last test of the module's kernel, which is gone afterwards."""
    import kernel_bridge
    with pytest.raises(kernel_bridge.KernelDied, match="the kernel died while running it, "
                       "exiting with status 3 "):
        kernel_bridge.execute(kernel, "import os\nos._exit(3)")


@pytest.mark.parametrize("ending", ["end of input", "SIGHUP"])
def test_a_bridge_whose_emacs_is_gone_stops_its_kernel_in_the_middle_of_a_block(tmp_path, ending):
    """Emacs may end without telling the bridge (killed, or its terminal
    closed before its exit hook ran), or with the SIGHUP it sends every
    subprocess as it exits: either is enough to stop the kernel and what
    the block started.  And no folder is left in /tmp, not even one that a
    bridge killed while its kernel started could not remove."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    finished = subprocess.Popen(["true"])
    finished.wait()   # its number is now free: no process runs with it
    stale = temporary / f"gradients-kernel-{finished.pid}-x1y2z3"
    stale.mkdir()
    (stale / "connection.json").write_text("{}")
    running = temporary / f"gradients-kernel-{os.getpid()}-a1b2c3"
    running.mkdir()
    bridge = Bridge(tmp_path, env=dict(os.environ, TMPDIR=str(temporary)))
    try:
        kernel = bridge.ready()
        bridge.send(CHILD + "\nimport time\ntime.sleep(300)")
        child = tmp_path / "child.pid"
        assert wait_for(child.exists)
        time.sleep(0.2)
        if ending == "SIGHUP":
            bridge.signal(signal.SIGHUP)
        else:
            bridge.close_input()
        assert bridge.process.wait(timeout=10) == 0
        assert gone(kernel), "the kernel outlived its bridge"
        assert gone(int(wait_for(child.read_text))), "what the block started outlived the bridge"
        assert list(temporary.iterdir()) == [running], "a stale folder was kept, or one left"
    finally:
        bridge.kill()


# Found by probing: ipykernel sends what is written to file descriptor 1
# as printed text, and echoes it to the kernel's own standard output,
# which was the bridge's: a stray line there was taken for the block's
# reply, a partial one spoiled the next.  Under pytest it did neither,
# until the kernel no longer saw pytest's PYTEST_CURRENT_TEST.
WRITES_TO_FD_1 = """import os, subprocess
os.write(1, b"by os.write\\n")
subprocess.run(["echo", "by a subprocess"])
os.system("printf 'by os.system, no line end'")
os.write(1, b'{"id": 99, "ok": true, "org": "forged"}\\n')
None"""


def test_what_a_block_writes_to_file_descriptor_1_is_printed_text_never_a_reply(tmp_path):
    bridge = Bridge(tmp_path)
    try:
        bridge.ready()
        for number, code in enumerate([WRITES_TO_FD_1, "print('next')"], 1):
            bridge.send(code, id=number)
        # Every line but those saying the bridge is alive is a reply: ids 1
        # and 2, nothing before or between.
        replies = [bridge.reply() for _ in range(2)]
        bridge.close_input()
        assert bridge.said() is None
        assert [(reply["id"], reply["ok"]) for reply in replies] == [(1, True), (2, True)]
        assert replies[0]["org"] == (": by os.write\n: by a subprocess\n"
                                     ': by os.system, no line end{"id": 99, "ok": true, '
                                     '"org": "forged"}')
        assert replies[1]["org"] == ": next"
        assert bridge.process.wait(timeout=10) == 0
    finally:
        bridge.kill()


def test_text_that_no_utf_8_file_can_hold_is_refused():
    """ipykernel already replaces a lone surrogate in printed text; one in a
    value's repr, or any other route, is still caught before Emacs."""
    import kernel_bridge
    for text in ("a\x00b", "\udc80"):
        with pytest.raises(kernel_bridge.BlockError):
            kernel_bridge.check_fits_the_notes(f": {text}", 1000)


def test_a_connection_folder_gone_while_bridges_clean_up_is_no_error(monkeypatch):
    """Each bridge starting removes the connection folders of dead bridges,
    while others remove their own: a folder it listed may be gone a moment
    later.  (Seen with three test workers on two cores.)"""
    import kernel_bridge
    listed = os.path.join(kernel_bridge.tempfile.gettempdir(),
                          f"{kernel_bridge.FOLDER_PREFIX}{os.getpid()}-gone")
    assert not os.path.exists(listed)
    monkeypatch.setattr(kernel_bridge.glob, "glob", lambda pattern: [listed])
    kernel_bridge.remove_stale_folders()


def test_a_kernel_that_dies_as_it_starts_says_why(monkeypatch):
    """Its last line (a thread it could not start under `ulimit -v`, a
    module it could not load) is in the bridge's error: a batch build's
    Emacs, with the buffer of the bridge's error output, is gone once it
    has said it."""
    import kernel_bridge
    monkeypatch.setattr(kernel_bridge, "LAUNCH_KERNEL",
                        "import sys; sys.exit('RuntimeError: can\\'t start new thread')")
    with pytest.raises(RuntimeError, match="kernel_info: RuntimeError: can't start new thread$"):
        kernel_bridge.Kernel()


# What kernels said as they died, and the line that says why.
LAST_WORDS = {
    "a thread's traceback cut by the process's end":
        ("Exception in thread Heartbeat:\nTraceback (most recent call last):\n"
         '  File "threading.py", line 1045, in _bootstrap_inner\n'
         "Traceback (most recent call last):\n"
         '  File "kernelapp.py", line 539, in init_io\n'
         "OSError: [Errno 24] Too many open files\n"
         '  File "socket.py", line 322, in bind\n',
         "OSError: [Errno 24] Too many open files"),
    "a thread's heading last":
        ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
         "    import numpy\nModuleNotFoundError: No module named 'numpy'\n"
         "Exception in thread Heartbeat:\n",
         "ModuleNotFoundError: No module named 'numpy'"),
    "a chained exception cut after its heading":
        ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
         "KeyError: 'x'\n\nDuring handling of the above exception, another exception occurred:\n\n"
         "Traceback (most recent call last):\n",
         "KeyError: 'x'"),
    "a library's own line after a traceback":
        ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
         "OSError: [Errno 24] Too many open files\n"
         "Too many open files (src/ipc_listener.cpp:297)\n",
         "Too many open files (src/ipc_listener.cpp:297)"),
    "one line": ("can't start new thread\n", "can't start new thread"),
    "frames alone": ('  File "x.py", line 1, in <module>\n', 'File "x.py", line 1, in <module>'),
}


@pytest.mark.parametrize("case", LAST_WORDS, ids=list(LAST_WORDS))
def test_the_line_of_a_dying_kernel_that_says_why_is_the_one_named(case):
    """Not its last line: under `ulimit -n` two threads' tracebacks
    interleaved, and the process ended part way through one."""
    import kernel_bridge
    said, why = LAST_WORDS[case]
    assert kernel_bridge.reason_in(said) == why


def test_a_kernel_whose_threads_tracebacks_interleave_is_named_by_the_one_that_ends(monkeypatch):
    import kernel_bridge
    said, why = LAST_WORDS["a thread's traceback cut by the process's end"]
    monkeypatch.setattr(kernel_bridge, "LAUNCH_KERNEL",
                        f"import os; os.write(2, {said.encode()!r}); os._exit(1)")
    with pytest.raises(RuntimeError, match=re.escape(f"kernel_info: {why}")):
        kernel_bridge.Kernel()


# Code run in the kernel before it starts, which makes its start fail
# with something left that an exit would wait for.
KEPT_FROM_ENDING = {
    # What `ulimit -n` did to ipykernel: its IOPub thread could not make
    # a socket, and the context of the sockets already open waited.
    "sockets open": "import zmq, ipykernel.iostream\n"
                    "def failing(thread):\n    raise zmq.ZMQError(24)\n"
                    "ipykernel.iostream.IOPubThread._setup_event_pipe = failing\n",
    "a thread running": "import threading, time, ipykernel.kernelapp\n"
                        "def failing(app):\n"
                        "    threading.Thread(target=time.sleep, args=(600,)).start()\n"
                        "    raise RuntimeError('the kernel could not start')\n"
                        "ipykernel.kernelapp.IPKernelApp.init_kernel = failing\n",
}


@pytest.mark.parametrize("case", KEPT_FROM_ENDING, ids=list(KEPT_FROM_ENDING))
def test_a_kernel_that_fails_as_it_starts_ends_at_once(monkeypatch, case):
    """A kernel whose start fails once it has started something its exit
    waits for (ZeroMQ's sockets, a thread) ended after a minute, and the
    bridge blamed no one ("Kernel didn't respond")."""
    import kernel_bridge
    monkeypatch.setattr(kernel_bridge, "LAUNCH_KERNEL",
                        KEPT_FROM_ENDING[case] + kernel_bridge.LAUNCH_KERNEL)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="kernel_info: .*(Too many open files|could not start)"):
        kernel_bridge.Kernel()
    assert time.monotonic() - started < 30


# Where each fails moves with what the process has open already: in
# ZeroMQ's context, in one of its sockets (ZeroMQ's own assertion), in
# ipykernel's pipes.
@pytest.mark.parametrize("limit, value, said", [("-n", 32, "Too many open files"),
                                                ("-n", 40, "Too many open files")])
def test_a_kernel_that_cannot_start_under_a_limit_names_it_at_once(tmp_path, limit, value, said):
    """The limits a shell gives its processes (`ulimit`), which a kernel
    inherits, are said when one stops it from starting."""
    start = ("import sys, kernel_bridge\n"
             "try:\n    kernel_bridge.Kernel()\n"
             "except RuntimeError as failure:\n    print(failure)\n")
    run = subprocess.run(["sh", "-c", f'ulimit {limit} {value} && exec "$0" -c "$1"',
                          sys.executable, start],
                         cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT / "tools")),
                         capture_output=True, text=True, timeout=40)
    assert "Kernel died before replying to kernel_info: " in run.stdout, run.stdout + run.stderr
    assert said in run.stdout, run.stdout
    assert f"(limits in force: `ulimit {limit}` is {value})" in run.stdout


@pytest.mark.parametrize("failure, said", [
    ("OSError(24, 'Too many open files')",
     "OSError: [Errno 24] Too many open files (limits in force: `ulimit -n` is 64)"),
    # Said already where it was raised: not twice.
    ("RuntimeError('Too many open files (limits in force: `ulimit -n` is 64)')",
     "RuntimeError: Too many open files (limits in force: `ulimit -n` is 64)"),
    ("ValueError('no limit meant')", "ValueError: no limit meant"),
])
def test_a_bridge_that_ends_on_an_error_says_the_limit_it_may_have_met(tmp_path, failure, said):
    """Emacs says the last line of a bridge that ended: under `ulimit -n`
    the bridge itself may be the first to meet the limit."""
    end = ("import kernel_bridge\n"
           "def serve(*args):\n"
           f"    raise {failure}\n"
           "kernel_bridge.serve = serve\n"
           "kernel_bridge.main()\n")
    run = subprocess.run(["sh", "-c", 'ulimit -n 64 && exec "$0" -c "$1"', sys.executable, end],
                         cwd=tmp_path, input="", capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(ROOT / "tools")))
    assert run.returncode == 1
    assert run.stderr.endswith("\n" + said + "\n"), run.stderr


@pytest.mark.parametrize("limits, error, said", [
    ("ulimit -v 600000", "RuntimeError: can't start new thread", "`ulimit -v` is 600000"),
    ("ulimit -u 50", "RuntimeError: can't start new thread", "`ulimit -u` is 50"),
    ("ulimit -d 500000", "MemoryError", "`ulimit -d` is 500000"),
    ("ulimit -v 600000 -n 64", "OSError: [Errno 24] Too many open files", "`ulimit -n` is 64"),
    ("true", "RuntimeError: can't start new thread", None),
    ("ulimit -n 64", "MemoryError", None),
])
def test_only_the_limits_an_error_may_have_met_are_named(limits, error, said):
    """A limit is named when it was lowered (the number of processes is
    limited by default) and the error is one that meeting it gives."""
    run = subprocess.run(["bash", "-c", f'{limits} && exec "$0" -c "$1" "$2"', sys.executable,
                          "import sys, kernel_bridge\n"
                          "print(kernel_bridge.with_the_limits_it_met(sys.argv[1]))", error],
                         env=dict(os.environ, PYTHONPATH=str(ROOT / "tools")),
                         capture_output=True, text=True, check=True)
    assert run.stdout == (f"{error} (limits in force: {said})\n" if said else f"{error}\n")


@pytest.mark.parametrize("limits, said", [
    ("ulimit -t 5", "`ulimit -t` is 5"),
    ("ulimit -v 3000000", "`ulimit -v` is 3000000"),
    ("ulimit -s 1024", "`ulimit -s` is 1024"),
    ("ulimit -d 3000000 -t 9", "`ulimit -d` is 3000000, `ulimit -t` is 9"),
    # Files open at once end no process; a stack as large as the default,
    # or none at all, is no lowered limit.
    ("ulimit -n 64 -s 8192", None),
    ("ulimit -s unlimited", None),
])
def test_the_limits_that_may_have_ended_a_kernel_are_named(limits, said):
    run = subprocess.run(["bash", "-c", f'{limits} && exec "$0" -c "$1"', sys.executable,
                          "import kernel_bridge; print(repr(kernel_bridge.limits_in_force()))"],
                         env=dict(os.environ, PYTHONPATH=str(ROOT / "tools")),
                         capture_output=True, text=True, check=True)
    assert run.stdout == repr(f" (limits in force: {said})" if said else "") + "\n"


# A block that meets a limit of the shell's, run by a bridge under it.
UNDER_A_LIMIT = {
    "memory": ("ulimit -v 3000000", "bytearray(4 * 10**9)",
               "raised MemoryError (limits in force: `ulimit -v` is 3000000)"),
    "processor time": ("ulimit -S -t 3", "import time\nwhile time.process_time() < 5:\n    pass",
                       "died the kernel died of signal 24 (SIGXCPU) while running it "
                       "(limits in force: `ulimit -t` is 3)"),
    # Not by the limit, yet it may have been: one cause among the others.
    "kill -9": ("ulimit -S -t 100", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
                "died the kernel was killed by signal 9 (the system's memory limit, kill -9, "
                "or a limit in force: `ulimit -t` is 100)"),
    "files open": ("ulimit -n 256", "files = [open('/dev/null') for _ in range(300)]",
                   "raised OSError: [Errno 24] Too many open files: '/dev/null' "
                   "(limits in force: `ulimit -n` is 256)"),
}


def failure_under(limits, code, folder):
    """What a bridge under the shell's LIMITS says of the block CODE's
    failure: its kind, then why, in a fresh kernel."""
    run_it = ("import sys, kernel_bridge\n"
              "kernel = kernel_bridge.Kernel()\n"
              "try:\n    kernel_bridge.execute(kernel, sys.argv[1])\n"
              "except kernel_bridge.BlockError as failure:\n"
              "    print(failure.kind, failure.summary)\n"
              "    print('lost' if failure.killed else 'its own doing')\n"
              "finally:\n    kernel.kill()\n")
    run = subprocess.run(["bash", "-c", f'{limits} && exec "$0" -c "$1" "$2"', sys.executable,
                          run_it, code], cwd=folder,
                         env=dict(os.environ, PYTHONPATH=str(ROOT / "tools")),
                         capture_output=True, text=True, timeout=60)
    return run.stdout, run.stderr


@pytest.mark.parametrize("case", UNDER_A_LIMIT, ids=list(UNDER_A_LIMIT))
def test_a_block_that_meets_a_limit_of_the_shells_is_said_to(tmp_path, case):
    """A MemoryError, a kernel ended by SIGXCPU, too many files open: each
    is said with the limit the shell set, which no block shows."""
    limits, code, said = UNDER_A_LIMIT[case]
    out, errors = failure_under(limits, code, tmp_path)
    assert out.splitlines()[:1] == [said], out + errors


# A kernel ended by a signal: by a crash, its code's own doing, or by one
# that asks a process to end, which nearly always comes from outside.
ENDED_BY_A_SIGNAL = {
    "SIGABRT": ("import os\nos.abort()",
                "died the kernel died of signal 6 (SIGABRT) while running it",
                "its own doing"),
    "SIGSEGV": ("import ctypes\nctypes.string_at(0)",
                "died the kernel died of signal 11 (SIGSEGV) while running it",
                "its own doing"),
    "SIGHUP": ("import os, signal\nos.kill(os.getpid(), signal.SIGHUP)",
               "died the kernel was ended by signal 1 (SIGHUP), sent by kill or a "
               "shutdown, or by the code it ran", "lost"),
    "SIGUSR1": ("import os, signal\nos.kill(os.getpid(), signal.SIGUSR1)",
                "died the kernel was ended by signal 10 (SIGUSR1), sent by kill or a "
                "shutdown, or by the code it ran", "lost"),
}


@pytest.mark.parametrize("case", ENDED_BY_A_SIGNAL, ids=list(ENDED_BY_A_SIGNAL))
def test_a_kernel_ended_by_a_signal_names_it_and_whose_doing_it_may_be(tmp_path, case):
    """SIGHUP or SIGTERM from outside was said as the block's crash: "block
    X stopped the kernel: the kernel died of signal 1"."""
    code, said, whose = ENDED_BY_A_SIGNAL[case]
    out, errors = failure_under("true", code, tmp_path)
    assert out.splitlines() == [said, whose], out + errors


# Each one a module that the kernel imports while it starts.
STANDARD_MODULES = ["random", "json", "logging"]


def test_modules_of_the_notes_named_as_standard_ones_stop_no_kernel(tmp_path, monkeypatch):
    """Notes may keep a random.py of their own beside README.org; the
    kernel loads with the standard one, and so do blocks, as in Jupyter."""
    import kernel_bridge
    for name in STANDARD_MODULES:
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('the notes\\' own {name}.py')\n")
    monkeypatch.chdir(tmp_path)
    kernel = kernel_bridge.Kernel()
    try:
        org, _ = kernel_bridge.execute(kernel, "\n".join(
            [f"import os, {', '.join(STANDARD_MODULES)}"] +
            [f"print({name}.__file__.startswith(os.path.dirname(os.__file__) + os.sep))"
             for name in STANDARD_MODULES]))
    finally:
        kernel.kill()
    assert org == "\n".join([": True"] * len(STANDARD_MODULES))


def test_only_messages_signed_with_the_connections_key_are_read():
    """The bridge speaks Jupyter's protocol itself: a message on the
    kernel's sockets that is not signed with the key, or not a Jupyter
    message at all, is passed over, and the next good one is read."""
    import uuid
    import zmq
    import kernel_bridge
    address, key = kernel_bridge.kernel_address(), str(uuid.uuid4())
    channels = kernel_bridge.Channels(address, key)
    impostor = kernel_bridge.Channels(kernel_bridge.kernel_address(), "another key")
    context = zmq.Context()
    try:
        iopub = context.socket(zmq.PUB)
        iopub.bind(f"ipc://{address}-{kernel_bridge.Channels.PORTS['iopub_port']}")

        def message(signer, text):
            parts = [json.dumps(part).encode() for part in
                     ({"msg_type": "stream", "msg_id": text}, {}, {}, {"text": text})]
            return [b"topic", kernel_bridge.Channels.DELIMITER, signer.signature(parts), *parts]

        sent = [message(impostor, "forged"), [b"no delimiter", b"{}"],
                message(channels, "genuine")]
        # A subscriber hears only what is published after it has joined.
        assert wait_for(lambda: iopub.send_multipart(message(channels, "probe"))
                        or channels.receive(channels.iopub, 0.1), 5)
        for each in sent:
            iopub.send_multipart(each)
        read = channels.receive(channels.iopub, 5)
        while read is not None and read["content"] == {"text": "probe"}:
            read = channels.receive(channels.iopub, 5)
        assert (read["msg_type"], read["content"]) == ("stream", {"text": "genuine"})
        assert channels.receive(channels.iopub, 0.2) is None
    finally:
        context.destroy(linger=0)
        channels.close()
        impostor.close()


# The bridge, its main thread stuck in a block for good (as in a deadlock)
# without coming round to ask whether to stop, and quick to tell.
STUCK_BRIDGE = """
import sys, threading
sys.path.insert(0, sys.argv[1])
import kernel_bridge
kernel_bridge.ALIVE_EVERY, kernel_bridge.STUCK_AFTER = 0.1, 0.5
kernel_bridge.Kernel.run = lambda self, *args, **options: threading.Event().wait()
kernel_bridge.serve(sys.stdin, sys.stdout)
"""


def test_a_bridge_whose_main_thread_is_stuck_falls_silent(tmp_path):
    """Its word that it is alive comes from a thread of its own, which a
    stuck main thread would not stop: Emacs, which kills a silent bridge,
    would then wait for good on a block with no time limit."""
    bridge = subprocess.Popen(
        [sys.executable, "-c", STUCK_BRIDGE, str(ROOT / "tools")], cwd=tmp_path,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        def said():
            return json.loads(bridge.stdout.readline())
        while said() == {"alive": True}:
            pass
        bridge.stdin.write(json.dumps({"id": 1, "code": "1"}) + "\n")
        bridge.stdin.flush()
        # Alive while it may yet come round, then silent: a pause five
        # times the interval comes, where without the check none would.
        for _ in range(600):
            readable, _, _ = select.select([bridge.stdout], [], [], 0.5)
            if not readable:
                break
            assert said() == {"alive": True}
        else:
            pytest.fail("a bridge whose main thread is stuck still says it is alive")
    finally:
        bridge.kill()
        bridge.wait()


def test_a_busy_bridge_says_it_is_alive_and_an_idle_one_says_nothing(tmp_path):
    """Emacs kills a bridge that holds a block and says nothing for long
    (stopped, or stuck), whether or not the block has a time limit: a
    working one says it is alive while its kernel starts and while a block
    runs, and nothing once it has answered."""
    bridge = Bridge(tmp_path)
    try:
        bridge.ready()
        bridge.send("print('quick')", id=1)
        assert bridge.reply()["org"] == ": quick"
        # Nothing, not even a late word that it is alive, while idle: one
        # and a half times the interval holds at least one of its turns.
        readable, _, _ = select.select([bridge.process.stdout], [], [], 1.5)
        assert readable == [], bridge.process.stdout.readline()
        bridge.send("import time\ntime.sleep(300)", id=2)
        for _ in range(2):
            readable, _, _ = select.select([bridge.process.stdout], [], [], 60)
            assert readable, "a bridge running a block said nothing for 60 s"
            assert json.loads(bridge.process.stdout.readline()) == {"alive": True}
    finally:
        bridge.kill()
