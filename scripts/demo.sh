#!/usr/bin/env bash
# `make demo`: lkm at work on real Debian kernel trees, side by side with Debian's kmod.
set -euo pipefail
cd "$(dirname "$0")/.."
LKM=$PWD/.venv/bin/lkm
WORK=$(mktemp -d /tmp/lkm-demo.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run()  { printf '$ %s\n' "$*"; "$@"; }
same() { if cmp -s "$1" "$2"; then echo "   -> byte-identical: $3"; else echo "   -> DIFFERS: $3"; diff "$1" "$2" | head; exit 1; fi; }

read -r _ T61 R61 < <(python3 scripts/test-fixtures.py 6.1)
read -r _ T612 R612 < <(python3 scripts/test-fixtures.py 6.12)
M61=$T61/lib/modules/$R61
M612=$T612/lib/modules/$R612
echo "Debian 6.1 tree:  $T61 ($(find "$M61/kernel" -name '*.ko' | wc -l) modules, uncompressed, RSA-signed)"
echo "Debian 6.12 tree: $T612 ($(find "$M612/kernel" -name '*.ko.xz' | wc -l) modules, .ko.xz, ECDSA-signed)"

say "modinfo: a module by path (6.1) and by name from a tree (6.12, xz-compressed)"
E1000E=$(find "$M61/kernel" -name e1000e.ko)
run "$LKM" modinfo "$E1000E" | head -12; echo "   ..."
"$LKM" modinfo "$E1000E" > "$WORK/a"; /sbin/modinfo "$E1000E" > "$WORK/b"; same "$WORK/a" "$WORK/b" "lkm and kmod modinfo of e1000e.ko"
run "$LKM" modinfo -b "$T612.kmod" -k "$R612" -F signer ext4
"$LKM" modinfo -b "$T612.kmod" -k "$R612" ext4 > "$WORK/a"; /sbin/modinfo -b "$T612.kmod" -k "$R612" ext4 > "$WORK/b"; same "$WORK/a" "$WORK/b" "lkm and kmod modinfo of ext4 by name"
mapfile -t ALL61 < <(find "$M61/kernel" -name '*.ko' | sort)
"$LKM" modinfo "${ALL61[@]}" > "$WORK/a"; /sbin/modinfo "${ALL61[@]}" > "$WORK/b"; same "$WORK/a" "$WORK/b" "lkm and kmod modinfo of all ${#ALL61[@]} modules of 6.1 in one call"

say "depmod: every index of the 6.1 and 6.12 trees, against kmod's"
for t in "$T61:$R61" "$T612:$R612"; do
  tree=${t%%:*}; rel=${t#*:}
  cp -al "$tree" "$WORK/depmod-$rel"
  start=$EPOCHREALTIME; "$LKM" depmod -b "$WORK/depmod-$rel" "$rel"; end=$EPOCHREALTIME
  n=0
  for f in "$tree.kmod/lib/modules/$rel"/modules.*; do
    b=$(basename "$f"); cmp -s "$f" "$WORK/depmod-$rel/lib/modules/$rel/$b" || { echo "   $b DIFFERS"; exit 1; }; n=$((n+1))
  done
  printf '   %s: lkm depmod took %.2f s; all %d files byte-identical to kmod depmod'"'"'s\n' "$rel" "$(awk "BEGIN{print $end - $start}")" "$n"
done
head -3 "$WORK/depmod-$R61/lib/modules/$R61/modules.dep"

say "modprobe: kmod's resolution (aliases, dependencies, softdeps) on the 6.1 tree"
run "$LKM" modprobe -d "$T61.kmod" -S "$R61" -D btrfs
run "$LKM" modprobe -d "$T61.kmod" -S "$R61" -R 'pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00'
mapfile -t NAMES61 < <(sed -n 's|^.*/\([^/:]*\)\.ko:.*|\1|p' "$T61.kmod/lib/modules/$R61/modules.dep")
"$LKM" modprobe -d "$T61.kmod" -S "$R61" -a -D "${NAMES61[@]}" > "$WORK/a" 2>&1 || true
/sbin/modprobe -d "$T61.kmod" -S "$R61" -a -D "${NAMES61[@]}" > "$WORK/b" 2>&1 || true
same "$WORK/a" "$WORK/b" "lkm and kmod modprobe -a -D of all ${#NAMES61[@]} modules in one call"

say "signatures: every module checked against the certificate built into its own kernel image"
run "$LKM" extract-certs --info "$T61/boot/vmlinuz-$R61"
run "$LKM" verify --kernel "$T61" "$M61/kernel"
run "$LKM" verify --kernel "$T612" "$M612/kernel"

say "Kbuild: test modules built from tests/modules against linux-headers-$R61"
declare -A KO
while read -r name path; do KO[$name]=$path; done < <(.venv/bin/python tests/kbuild.py "$R61")
echo "   built ${#KO[@]} modules: ${!KO[*]}"
run "$LKM" modinfo -p "${KO[lkm_params]}" | head -6; echo "   ..."

say "sign-file: lkm signs byte for byte as the kernel's scripts/sign-file"
openssl req -new -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=lkm demo key" \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
run "$LKM" sign-file sha256 "$WORK/key.pem" "$WORK/cert.pem" "${KO[lkm_params]}" "$WORK/lkm.ko"
/usr/lib/linux-kbuild-6.1/scripts/sign-file sha256 "$WORK/key.pem" "$WORK/cert.pem" "${KO[lkm_params]}" "$WORK/kernel.ko"
same "$WORK/lkm.ko" "$WORK/kernel.ko" "lkm sign-file and the kernel's scripts/sign-file"
run "$LKM" modinfo -F signer "$WORK/lkm.ko"
run "$LKM" verify --cert "$WORK/cert.pem" "$WORK/lkm.ko"
printf '$ %s\n' "$LKM verify --kernel $T61 $WORK/lkm.ko   # a key the kernel does not trust"
"$LKM" verify --kernel "$T61" "$WORK/lkm.ko" || echo "   (exit $?: the kernel would say ENOKEY and taint E, or refuse under sig_enforce)"
run "$LKM" strip-sig -o "$WORK/stripped.ko" "$WORK/lkm.ko"
same "$WORK/stripped.ko" "${KO[lkm_params]}" "strip-sig gives back the module as built"

say "the virtual kernel: Debian's 6.1 loader reproduced, no root needed"
VK=$WORK/vk
run "$LKM" virtual create "$VK" --from "$T61"
export LKM_VIRTUAL=$VK   # the same insmod/rmmod/modprobe/lsmod now act on the virtual kernel
run "$LKM" modprobe -v e1000e     # a PCI driver: its init registers with the bus, finds no device
run "$LKM" modprobe -v vfat
run "$LKM" cat /proc/filesystems | tail -2
printf '$ %s\n' "$LKM modprobe ext4   # nothing pretends: code the virtual kernel cannot run says so"
"$LKM" modprobe ext4 || echo "   (exit $?)"
run "$LKM" insmod "${KO[lkm_params]}" p_int=42 'p_charp="hello world"'
run "$LKM" insmod "${KO[lkm_user]}"
run "$LKM" insmod "${KO[lkm_prop]}"
printf '$ %s\n' "$LKM insmod ${KO[lkm_prop_gpl]}   # proprietary module using a GPL-only export"
"$LKM" insmod "${KO[lkm_prop_gpl]}" || echo "   (exit $?)"
printf '$ %s\n' "$LKM rmmod lkm_params"
"$LKM" rmmod lkm_params || echo "   (exit $?)"
run "$LKM" cat /sys/module/lkm_params/parameters/p_charp
run "$LKM" write /sys/module/lkm_params/parameters/p_int 7
run "$LKM" cat /sys/module/lkm_params/parameters/p_int
run "$LKM" cat /proc/sys/kernel/tainted
unset LKM_VIRTUAL

say "the virtual kernel runs the module's own code (x86-64 under CPU emulation)"
VX=$WORK/vx
"$LKM" virtual create "$VX" --from "$T61" > /dev/null
export LKM_VIRTUAL=$VX
run "$LKM" insmod "${KO[lkm_exec_params]}" count=3 'name="demo"'
run "$LKM" cat /sys/module/lkm_exec_params/parameters/count
printf '$ %s\n' "$LKM insmod ${KO[lkm_exec_enomem]}   # init returns -ENOMEM"
"$LKM" insmod "${KO[lkm_exec_enomem]}" || echo "   (exit $?)"
printf '$ %s\n' "$LKM insmod ${KO[lkm_exec_warn]}   # WARN_ON(1) in init: taint W, loads"
"$LKM" insmod "${KO[lkm_exec_warn]}" || echo "   (exit $?)"
printf '$ %s\n' "$LKM insmod ${KO[lkm_exec_null_write]}   # a NULL write in init: the oops kills insmod"
( "$LKM" insmod "${KO[lkm_exec_null_write]}" ) 2>/dev/null || echo "   (exit $?: killed, as the real kernel kills insmod)"
run "$LKM" lsmod
run "$LKM" cat /proc/sys/kernel/tainted
printf '$ %s\n' "$LKM dmesg   # register dumps left out here"
"$LKM" dmesg | grep -v -E '^\[[ 0-9.]*\] (RAX|RDX|RBP|R10|R13|RSP|FS|CS|CR2|Code):' | tail -n +2
unset LKM_VIRTUAL

say "lkm check: will it load on that kernel, and if not, why?"
printf '$ %s\n' "$LKM check ${KO[lkm_params]} --kernel $T612   # built for 6.1, checked against 6.12"
"$LKM" check "${KO[lkm_params]}" --kernel "$T612" || echo "   (exit $?)"
declare -A KO612
while read -r name path; do KO612[$name]=$path; done < <(.venv/bin/python tests/kbuild.py "$R612")
printf '$ %s\n' "$LKM check ${KO612[lkm_user]} --kernel $T61   # built for 6.12, checked against 6.1"
"$LKM" check "${KO612[lkm_params]}" "${KO612[lkm_user]}" --kernel "$T61" || echo "   (exit $?)"
run "$LKM" check "$M61/kernel/fs/btrfs/btrfs.ko" --kernel "$T61" --cmdline "module_blacklist=xor"  || echo "   (exit $?)"

say "the course's exercises in the virtual kernel: a /proc file with the uptime, pr_debug and dynamic debug"
export LKM_VIRTUAL=$WORK/ve
"$LKM" virtual create "$LKM_VIRTUAL" --from "$T61" > /dev/null
run "$LKM" insmod "${KO[lkm_exec_proc_uptime]}"
run "$LKM" cat /proc/lkm_uptime     # its seq_file show() runs, on the virtual clock
run "$LKM" cat /proc/lkm_uptime
run "$LKM" insmod "${KO[lkm_exec_loglevel]}" loglevel=3      # pr_debug stays silent ...
run "$LKM" rmmod lkm_exec_loglevel
run "$LKM" insmod "${KO[lkm_exec_loglevel]}" loglevel=3 dyndbg=+p   # ... until dynamic debug enables it
"$LKM" dmesg | grep lkm_exec_loglevel
unset LKM_VIRTUAL

say "lkm vm: the same module in Debian's real 6.1 kernel, booted under QEMU, beside the virtual one"
printf '$ %s\n' "$LKM vm --kernel $T61 --dmesg -- /sbin/insmod ${KO[lkm_exec_params]} count=3 'name=\"demo\"'"
"$LKM" vm --kernel "$T61" --dmesg -- /sbin/insmod "${KO[lkm_exec_params]}" count=3 'name="demo"' | tee "$WORK/real"
"$LKM" virtual create "$WORK/vy" --from "$T61" > /dev/null
"$LKM" --virtual "$WORK/vy" insmod "${KO[lkm_exec_params]}" count=3 'name="demo"'
"$LKM" --virtual "$WORK/vy" dmesg | grep lkm_exec_params > "$WORK/virt"
sed 's/^\[[ 0-9.]*\] //' "$WORK/real" > "$WORK/a"; sed 's/^\[[ 0-9.]*\] //' "$WORK/virt" > "$WORK/b"
same "$WORK/a" "$WORK/b" "the module's log lines in the real kernel and in the virtual kernel"

say "security: lkm audit (a module against a kernel) and lkm taint (a taint value explained)"
printf '$ %s\n' "$LKM audit ${KO[lkm_audit_kprobe]} --kernel $T61"
"$LKM" audit "${KO[lkm_audit_kprobe]}" --kernel "$T61" || echo "   (exit $?: a high-severity finding)"
run "$LKM" audit "$M61/kernel/drivers/net/dummy.ko" --kernel "$T61"
run "$LKM" taint "Tainted: G        W  OE"

say "the virtual kernel's lsmod and kernel log"
run "$LKM" --virtual "$VK" lsmod
run "$LKM" --virtual "$VK" dmesg
echo
echo "Done: modinfo and depmod byte-identical to kmod on both trees, every signature verified,"
echo "sign-file reproduced, and a virtual kernel that loads, runs and refuses modules as Debian's"
echo "6.1 does, confirmed against the real kernel booted under QEMU."
