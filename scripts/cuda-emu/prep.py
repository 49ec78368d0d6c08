# Turns a flash kernel source into C++ for emu.h: drops the inline-asm helpers (emu.h has emulated ones), maps shared memory
# to emu_smem and red.global.add.v4 to emu_red4, wraps it all in a namespace.  usage: prep.py SRC.cu OUT.inc NAMESPACE
import re, sys
src, out, ns = sys.argv[1], sys.argv[2], sys.argv[3]
s = open(src).read()
drop = ['pack_bf16', 'fast_exp2', 'mma16816', 'smem_addr', 'cp_async16', 'cp_commit', 'cp_wait_all', 'cp_wait_one', 'ldsm4', 'ldsm4t']
for name in drop:
    while True:
        m = re.search(r'__device__ __forceinline__ [\w\s\*]+?\b' + name + r'\(', s)
        if not m: break
        i = s.index('{', m.end())
        depth = 0; j = i
        while True:
            if s[j] == '{': depth += 1
            elif s[j] == '}':
                depth -= 1
                if depth == 0: break
            j += 1
        s = s[:m.start()] + s[j + 1:]
s = re.sub(r'extern __shared__ __align__\(16\) u16 (\w+)\[\];', r'u16* \1 = (u16*) emu_smem;', s)
s = s.replace('extern "C" __global__', '').replace('__global__', '')
s = re.sub(r'__launch_bounds__\([^)]*\)', '', s)
s = s.replace('__device__ __forceinline__', 'static inline').replace('__device__', 'static')
s = s.replace('typedef unsigned int u32;', '').replace('typedef unsigned short u16;', '')
s = s.replace('#define NEG_INF', '#undef NEG_INF\n#define NEG_INF')
open(out, 'w').write('namespace %s {\n%s\n}\n' % (ns, s))
s = open(out).read()
s = re.sub(r'asm volatile\("red\.global\.add\.v4\.f32 \[%0\], \{%1, %2, %3, %4\};" :: "l"\((.*?)\), "f"\((\w+)\), "f"\((\w+)\),\s*"f"\((\w+)\), "f"\((\w+)\) : "memory"\);',
           r'emu_red4(\1, \2, \3, \4, \5);', s, flags=re.S)
open(out, 'w').write(s)
