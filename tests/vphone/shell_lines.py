"""One-liners the virtual phone's shell is checked on against real mksh and toybox.

``@T@`` is a folder holding the fixture files (``FIXTURE``): ``/data/local/tmp/dt`` on the
virtual phone, a temporary folder for the real shell. Each line must give the real shell's
stdout and exit status, or fail with status 2 and "not modelled" on stderr.
"""

FIXTURE = {
    "a.txt": b"one\ntwo\nthree\n",
    "b.txt": b"alpha beta\ngamma\n",
    "sub/c.txt": b"deep\n",
    "sub/inner/d.txt": b"deeper\n",
    "sp ace.txt": b"x\n",
    "empty": b"",
}

LINES = [
    # echo, quoting, escapes
    "echo hello", "echo 'a  b'", 'echo "a  b"', "echo a  b", "echo -n x; echo y", "echo", "echo ''",
    r"echo 'a\tb'", r"echo 'a\nb'", r"echo 'a\cb'; echo z", r"echo -e 'a\tb'", r"echo -E 'a\tb'",
    r"echo a\\b", r'echo "a\\b"', r"echo 'x\\y'", r"echo \$HOME", r'echo "\$HOME"', "echo \"it's\"",
    "echo 'say \"hi\"'", "echo a'b'\"c\"d", "echo -n", "echo -- x", "echo -x", r"echo '\0101'",
    # variables and parameter expansion
    "V=1; echo $V", "V=hello; echo ${V}", "echo ${UNSET_V:-fallback}", "V=; echo ${V:-empty}",
    "V=; echo ${V-unset}", "echo ${UNSET_V-unset}", "V=x; echo ${V:+alt}", "echo ${UNSET_V:+alt}.",
    "echo ${UNSET_V:=assigned}; echo $UNSET_V", "V=abcdef; echo ${#V}", "V=file.tar.gz; echo ${V%.*}",
    "V=file.tar.gz; echo ${V%%.*}", "V=/a/b/c; echo ${V#*/}", "V=/a/b/c; echo ${V##*/}",
    "echo $HOME", "echo $?", "false; echo $?", "true; echo $?", "A=1 B=2; echo $A$B", "V='a b'; echo $V",
    'V="a   b"; echo "$V"', "V=x; echo \"${V}y\"", "echo ${UNSET_V}z", "unset V; echo ${V:-u}",
    "V=1; unset V; echo ${V-gone}", "echo $#", "set -- a b c; echo $#", "set -- a b; echo $1-$2",
    'set -- "x y" z; for a in "$@"; do echo $a; done', "V=a; export V; echo $V", "readonly R=1; echo $R",
    # arithmetic
    "echo $((1+2))", "echo $((7/2))", "echo $((7%3))", "echo $((2*3+4))", "echo $((2*(3+4)))",
    "echo $((-5+2))", "V=4; echo $((V*2))", "V=4; echo $(($V+1))", "echo $((10>3))", "echo $((1==2))",
    "echo $((1<<4))", "echo $((0x10))", "echo $((5&3)) $((5|3)) $((5^3))", "echo $((!0))",
    "echo $(( 3 - 1 ))", "echo $((1/0))", "i=1; i=$((i+1)); echo $i",
    # command substitution, backquotes
    "echo $(echo inner)", "echo `echo back`", "echo \"$(echo 'a  b')\"", "echo $(echo a; echo b)",
    "V=$(echo set); echo $V", "echo x$(true)y", "echo $(echo $(echo nested))", "echo `echo a` `echo b`",
    "echo $(cat /nonexistent-file) after", "echo $(false); echo $?", "V=$(false); echo $?",
    "echo \"`echo q`\"",
    # brace expansion, tilde
    "echo a{b,c}d", "echo {x,y,z}", "echo a{1,2}{3,4}", "echo {a}", "echo '{a,b}'", "echo \"{a,b}\"",
    "echo a{,b}", "echo ~", "echo ~/x", "echo '~'", "echo a~", "echo {1..3}",
    # lists, pipelines, status
    "true && echo yes", "false && echo yes", "false || echo no", "true || echo no", "echo a; echo b",
    "echo a | cat", "echo a | false; echo $?", "false | true; echo $?", "! true; echo $?", "! false; echo $?",
    "echo one two | wc -w", "printf 'b\\na\\n' | sort", "exit 3", "(exit 4); echo $?", "exit", "true; exit",
    # control flow
    "if true; then echo t; else echo f; fi", "if false; then echo t; else echo f; fi",
    "for i in 1 2 3; do echo $i; done", "i=0; while [ $i -lt 3 ]; do echo $i; i=$((i+1)); done",
    "case x in x) echo match;; *) echo no;; esac", "f() { echo fn $1; }; f arg", "{ echo grouped; }",
    "(echo sub)", "echo bg &", "for f in @T@/*.txt; do echo $f; done",
    # printf
    "printf '%s\\n' a b c", "printf '%s-%s\\n' a b c", "printf '%d\\n' 42", "printf '%5s|\\n' ab",
    "printf '%-5s|\\n' ab", "printf '%x\\n' 255", "printf '%03d\\n' 7", "printf 'no newline'", "printf '%%\\n'",
    "printf '%s\\n'", "printf '%c\\n' abc", "printf '%.2f\\n' 3.14159", "printf '%b\\n' 'a\\tb'",
    # test / [
    "[ -e /dev/null ] && echo yes", "[ -e @T@/a.txt ] && echo yes", "[ -e @T@/nope ] || echo no",
    "[ -d @T@/sub ] && echo dir", "[ -f @T@/sub ] || echo notfile", "[ -s @T@/empty ] || echo empty",
    "[ -s @T@/a.txt ] && echo nonempty", "[ a = a ] && echo eq", "[ a != b ] && echo ne", "[ 3 -gt 2 ] && echo gt",
    "[ -z '' ] && echo z", "[ -n x ] && echo n", "test 1 -eq 1; echo $?", "[ ! -e @T@/nope ] && echo neg",
    "[ -r @T@/a.txt ] && echo r", "[ 1 -lt 2 -a 2 -lt 3 ] && echo and", "[ abc ]; echo $?", "[ ]; echo $?",
    # files: cat, head, tail, wc, grep
    "cat @T@/a.txt", "cat @T@/a.txt @T@/b.txt", "cat @T@/nope; echo $?", "head -n 1 @T@/a.txt",
    "head -1 @T@/a.txt", "tail -n 1 @T@/a.txt", "tail -1 @T@/a.txt", "wc -l @T@/a.txt", "wc -l < @T@/a.txt",
    "wc -c @T@/b.txt", "grep two @T@/a.txt", "grep -c o @T@/a.txt", "grep -v two @T@/a.txt",
    "grep -o et @T@/b.txt", "grep -n t @T@/a.txt", "grep -i ONE @T@/a.txt", "grep zzz @T@/a.txt; echo $?",
    "grep -q one @T@/a.txt && echo found", "grep -e one -e two @T@/a.txt", "grep -w one @T@/a.txt",
    "grep -l one @T@/a.txt @T@/b.txt", "grep -E 'o|a' @T@/b.txt", "grep -F . @T@/a.txt; echo $?",
    "cat < @T@/a.txt | head -n 2", "cat @T@/sp\\ ace.txt", "cat '@T@/sp ace.txt'",
    # ls, stat, du, df
    "ls @T@", "ls @T@/sub", "ls -a @T@/sub", "ls -1 @T@", "ls -d @T@/sub", "ls @T@/nope; echo $?",
    "ls -R @T@/sub", "ls @T@/*.txt", "ls -S @T@", "ls -t @T@ | wc -l", "ls -la @T@ | wc -l",
    "du -s @T@ | cut -f 2", "du @T@/sub | wc -l", "du -sh @T@ | cut -f 2", "df -h / | head -n 1",
    "stat -c %s @T@/a.txt", "stat -c '%n %s' @T@/b.txt",
    # writing files
    "echo new > @T@/w1; cat @T@/w1", "echo 1 > @T@/w2; echo 2 >> @T@/w2; cat @T@/w2",
    "mkdir @T@/m1 && ls -d @T@/m1", "mkdir -p @T@/m2/x/y && ls @T@/m2/x", "touch @T@/t1 && ls @T@/t1",
    "cp @T@/a.txt @T@/c1 && cat @T@/c1", "echo z > @T@/r1; rm @T@/r1; ls @T@/r1; echo $?",
    "echo q > @T@/mv1; mv @T@/mv1 @T@/mv2; cat @T@/mv2", "rmdir @T@/nope; echo $?",
    "echo err >&2", "echo err 2>/dev/null >&2; echo after", "cat @T@/nope 2>/dev/null; echo $?",
    "cat @T@/nope 2>&1 | wc -l", "echo out > /dev/null; echo $?", "cat /dev/null | wc -c",
    # misc commands
    "true", "false", ": ; echo colon", "sha256sum @T@/a.txt | cut -c 1-16", "md5sum @T@/empty | cut -c 1-8",
    "basename /a/b/c.txt", "dirname /a/b/c.txt", "seq 3", "seq 2 4", "echo a,b | cut -d , -f 2",
    "echo hello | tr l L", "echo abc | rev", "printf 'a\\na\\nb\\n' | uniq", "printf 'a\\nb\\n' | tac",
    "echo x | tee @T@/tee1; cat @T@/tee1", "echo a b | xargs echo", "which cat | cut -c 1", "which nosuch; echo $?",
    "command -v echo", "type echo", "expr 1 + 2", "nonexistent_cmd_xyz; echo $?", "sleep 0; echo slept",
    "pwd", "cd /; pwd", "echo $((1+1)) $(echo two) `echo three`",
]
