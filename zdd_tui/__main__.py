from zdd_tui.cli import main

raise SystemExit(main())
