from rlhf_desktop.cli import main

raise SystemExit(main())
