from kohya_wrap.cli import main

main()
