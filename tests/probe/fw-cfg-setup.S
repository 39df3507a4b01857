/* fw-cfg-setup.S: a 64 KiB PC "BIOS" that prints the kernel setup blob QEMU
 * hands the firmware (fw_cfg key 0x18, FW_CFG_SETUP_DATA: the setup sectors
 * with QEMU's header patch applied) on COM1 as one line
 *   tessella-probe fw-cfg-setup <hex of bytes 0x1f1..0x290>
 * and halts. Used by tests/tests/image_boot.rs to check the setup-header
 * model in tessella-measurements against what QEMU really produces, since
 * neither OVMF nor the kernel leave QEMU's values visible to a booted guest.
 * Real mode, no RAM needed beyond a small stack: port I/O only (0x510 selector,
 * 0x511 data, 0x3f8 COM1). Assembled at test time with GNU as + ld. */
        .code16
        .text
        .globl _start
        .org 0
_start:
start:
        cli
        xor %ax, %ax
        mov %ax, %ss
        mov $0x7000, %sp
        mov $msg, %si
1:      mov %cs:(%si), %al
        test %al, %al
        jz 2f
        call putc
        inc %si
        jmp 1b
2:      mov $0x510, %dx
        mov $0x18, %ax
        out %ax, %dx
        mov $0x511, %dx
        mov $0x1f1, %cx
3:      in %dx, %al
        loop 3b
        mov $(0x290 - 0x1f1), %cx
4:      mov $0x511, %dx
        in %dx, %al
        mov %al, %bl
        shr $4, %al
        call nibble
        mov %bl, %al
        and $0xf, %al
        call nibble
        loop 4b
        mov $'\n', %al
        call putc
5:      hlt
        jmp 5b

nibble:
        add $'0', %al
        cmp $'9', %al
        jbe putc
        add $('a' - '0' - 10), %al
putc:
        push %dx
        push %ax
        mov $0x3fd, %dx
6:      in %dx, %al
        test $0x20, %al
        jz 6b
        pop %ax
        mov $0x3f8, %dx
        out %al, %dx
        pop %dx
        ret

msg:    .asciz "tessella-probe fw-cfg-setup "

        .org 0xfff0
        jmp start
        .org 0x10000
